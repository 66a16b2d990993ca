"""greensched.predictor."""
