"""Counterfactual foreground masks from a trained Transporter (VAI, Wang et al., CVPR 2021, Sec. 3.2).

A trained Transporter puts its keypoints on what moves, and its refine net R draws from features.
VAI asks what R draws *because of* the features under the keypoints: decode the feature map kept
only under the keypoints, Φ(x) · H(x), and subtract the decoding of the null (all-zero) feature
map, R(0), which is what R draws from no evidence at all. The difference is the controlled direct
effect of the keypoint features on each pixel; where it is large in any colour channel the pixel is
foreground. VAI thresholds it at 0.35 and found 0.35-0.5 equally good.

Masks are returned at 84x84, aligned with the 100 -> 84 centre crop that the agent and the
attention adapter see: a model trained at another size has its effect map resized to 84 before
the threshold, so one threshold means the same at every model size.

Example::

    model = load_transporter(run_dir / "transporter.safetensors", device)
    foreground = counterfactual_masks(model, frames, preset, device=device)  # (N, 84, 84) bool
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from vai.config import VisionPreset
from vai.vision.keypoints import CROP_SIZE, Transporter, frames_to_inputs, union_map


def counterfactual_effect(model: Transporter, images: torch.Tensor) -> torch.Tensor:
    """|R(Φ(x) · H(x)) - R(0)|, the largest over colour channels: (B, 3, S, S) -> (B, 1, S, S).

    ``images`` are model inputs in [0, 1] on the model's device. The absolute value counts an
    object darker than R's null drawing as much as a brighter one. Call in eval mode: batch norm
    then uses its running statistics and the result does not depend on the rest of the batch.
    """
    features = model.encode(images)
    _, maps = model.keypoints(images)
    keypoint_features = features * union_map(maps)  # only what sits under the keypoints (VAI, Sec. 3.2)
    null = model.decode(torch.zeros_like(features[:1]))  # R(0) is the same for every frame
    return (model.decode(keypoint_features) - null).abs().amax(dim=1, keepdim=True)


def dilate_erode(masks: torch.Tensor, iterations: int) -> torch.Tensor:
    """Dilate (``iterations`` > 0) or erode (< 0) boolean masks (B, 1, H, W) with a 3x3 square.

    Max-pooling grows the foreground by one pixel a pass; erosion is dilation of the background.
    Outside the image counts as neither, so borders do not erode the foreground by themselves.
    """
    grown = masks.float()
    dilate = iterations > 0
    if not dilate:
        grown = 1.0 - grown
    for _ in range(abs(iterations)):
        grown = F.max_pool2d(grown, kernel_size=3, stride=1, padding=1)
    return grown > 0.5 if dilate else grown < 0.5


@torch.inference_mode()
def counterfactual_masks(
    model: Transporter,
    frames: np.ndarray,
    preset: VisionPreset,
    batch: int = 256,
    device: str | torch.device | None = None,
    morphology: int | None = None,
    threshold: float | None = None,
) -> np.ndarray:
    """Foreground masks (N, 84, 84) bool of stored uint8 frames (N, 3, 100, 100).

    The counterfactual effect (:func:`counterfactual_effect`) is computed at the model's size,
    resized (bilinear) to the 84x84 centre crop, and compared with ``threshold`` (default
    ``preset.mask_threshold``): foreground where effect > threshold, so a higher threshold
    gives a subset. ``morphology`` (default ``preset.mask_morphology``) then dilates (> 0) or
    erodes (< 0) that many 3x3 steps. Deterministic: the model runs in eval mode (restored
    afterwards) and nothing is sampled. Frames go to the model's device ``batch`` at a time;
    ``device``, if given, must be where the model is (a guard against a silent copy of every batch).
    """
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"expected uint8 frames (N, 3, H, W), got {frames.dtype} {frames.shape}")
    if threshold is None:
        threshold = preset.mask_threshold
    if morphology is None:
        morphology = preset.mask_morphology
    model_device = next(model.parameters()).device
    requested = torch.device(device) if device is not None else model_device
    if requested.type != model_device.type or requested.index not in (None, model_device.index):
        raise ValueError(f"the model is on {model_device}, not {device}; move it with model.to(device)")
    device = model_device
    was_training = model.training
    model.eval()
    masks = np.empty((len(frames), CROP_SIZE, CROP_SIZE), dtype=bool)
    try:
        for start in range(0, len(frames), batch):
            images = frames_to_inputs(frames[start : start + batch], model.size, device)
            effect = counterfactual_effect(model, images)
            if model.size != CROP_SIZE:
                effect = F.interpolate(effect, size=(CROP_SIZE, CROP_SIZE), mode="bilinear", align_corners=False)
            foreground = effect > threshold
            if morphology:
                foreground = dilate_erode(foreground, morphology)
            masks[start : start + len(images)] = foreground[:, 0].cpu().numpy()
    finally:
        model.train(was_training)
    return masks
