"""Examples that use dali_voc: ``python -m dali_voc.examples.train_fcn``."""
