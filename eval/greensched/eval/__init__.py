"""greensched.eval."""
