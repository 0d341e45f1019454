"""VAI's vision pipeline: collect, keypoints (Transporter), counterfactual masks, attention adapter."""
