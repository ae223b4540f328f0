"""The predictor: loads registered checkpoints and answers predictions."""
