"""TFX components of backbone-regularizer, one folder per component."""
