"""multitype: text classification from a laptop to AWS and back."""

__version__ = "0.1.0"
