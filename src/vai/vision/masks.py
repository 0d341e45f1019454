"""Counterfactual foreground masks from a trained Transporter (VAI, Wang et al., CVPR 2021, Sec. 3.2).

A trained Transporter puts its keypoints on what moves, and its refine net R draws from features.
VAI asks what R draws *because of* the features under the keypoints: decode the feature map kept
only under the keypoints, Φ(x) · max_k H^k(x), and subtract the decoding of the null (all-zero)
feature map, R(0), which is what R draws from no evidence at all. The difference is the controlled
direct effect of the keypoint features on each pixel; where it exceeds a threshold in some colour
channel, the pixel is foreground. VAI thresholds the signed difference at 0.35 (it found 0.35-0.5
equally good) and draws the mask-time Gaussians wider than the training ones (0.25 against 0.1), so
a keypoint's map covers the body it sits on rather than its centre.

Masks are made for the whole frame (100x100, as VAI), whatever the side the model was trained at:
the effect map is resized to the frame's side before the threshold, so one threshold means the same
at every model size. The adapter's training crops cut the masks with their frames.

Example::

    model = load_transporter(run.transporter, device)  # run: a vai.run_dir.RunDir
    foreground = counterfactual_masks(model, frames, preset, device=device)  # (N, 100, 100) bool
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from vai.presets.vision import VisionPreset
from vai.vision.keypoints import Transporter, frames_to_inputs, gaussian_maps, max_map


def counterfactual_effect(
    model: Transporter, images: torch.Tensor, std: float = 0.25, absolute: bool = False
) -> torch.Tensor:
    """R(Φ(x) · max_k H^k(x)) - R(0), the largest over colour channels: (B, 3, S, S) -> (B, 1, S, S).

    ``images`` are model inputs in [0, 1] on the model's device; the keypoint maps H^k are Gaussians
    of width ``std`` (VAI's convention, see :func:`gaussian_maps`) at Ψ's keypoints. The difference
    is signed, as VAI thresholds it: what the keypoint features make R draw brighter than its null
    drawing. ``absolute=True`` takes its magnitude instead (VAI's ``abs_comparison`` option), so an
    object darker than R's null drawing counts as well. Call in eval mode: batch norm then uses its
    running statistics and the result does not depend on the rest of the batch.
    """
    features = model.encode(images)
    coords, _ = model.keypoints(images)
    maps = gaussian_maps(coords, features.shape[-2:], std)
    keypoint_features = features * max_map(maps)  # only what sits under the keypoints (VAI, Sec. 3.2)
    null = model.decode(torch.zeros_like(features[:1]))  # R(0) is the same for every frame
    effect = model.decode(keypoint_features) - null
    return (effect.abs() if absolute else effect).amax(dim=1, keepdim=True)


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
    """Foreground masks (N, H, W) bool of stored uint8 frames (N, 3, H, W), for the whole frame.

    The counterfactual effect (:func:`counterfactual_effect`, Gaussians of width
    ``preset.mask_keypoint_std``, signed unless ``preset.mask_abs_effect``) is computed at the
    model's size, resized (bilinear) to the frame's side, and compared with ``threshold`` (default
    ``preset.mask_threshold``): foreground where effect > threshold, so a higher threshold gives a
    subset. ``morphology`` (default ``preset.mask_morphology``) then dilates (> 0) or erodes (< 0)
    that many 3x3 steps. Deterministic: the model runs in eval mode (restored afterwards) and nothing
    is sampled. Frames go to the model's device ``batch`` at a time; ``device``, if given, must be
    where the model is (a guard against a silent copy of every batch).
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
    side = frames.shape[-2:]
    masks = np.empty((len(frames), *side), dtype=bool)
    try:
        for start in range(0, len(frames), batch):
            images = frames_to_inputs(frames[start : start + batch], model.size, device)
            effect = counterfactual_effect(model, images, preset.mask_keypoint_std, preset.mask_abs_effect)
            if tuple(effect.shape[-2:]) != tuple(side):
                effect = F.interpolate(effect, size=tuple(side), mode="bilinear", align_corners=False)
            foreground = effect > threshold
            if morphology:
                foreground = dilate_erode(foreground, morphology)
            masks[start : start + len(images)] = foreground[:, 0].cpu().numpy()
    finally:
        model.train(was_training)
    return masks
