"""Reading raw input, the leakage audit and the processed splits."""
