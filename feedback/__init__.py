"""greensched.feedback."""
