"""multitype: text classification from a laptop to AWS and back.

The public inference API is :func:`load_predictor`::

    from multitype import load_predictor
    p = load_predictor("models/final/logreg")        # or an s3:// URL, or a transformer folder
    labels, scores = p.predict(["text", ...])         # class names, (n, n_classes) probabilities
"""

from multitype.predictor import Predictor, load_predictor

__version__ = "0.1.0"
__all__ = ["Predictor", "load_predictor", "__version__"]
