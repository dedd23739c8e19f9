"""The VQ tokenizer (transformers' JanusVQVAE) trained as an autoencoder: encoder -> nearest code -> decoder.

Janus decodes with L2-normalised codebook vectors (`get_codebook_entry`), so training matches codes by cosine
(encoder outputs and codes normalised) and feeds the decoder the normalised code, with the straight-through
gradient to the encoder. Codes left unused for a while restart at encoder outputs of the current batch. The
saved codebook is normalised, so transformers' own `encode` (unnormalised distances) picks the same codes.
"""

import torch
import torch.nn.functional as F

BETA = 0.25  # commitment weight, as the VQ-VAE paper and transformers' quantizer use


def quantize(vq, pixels: torch.Tensor) -> tuple:
    """pixels [B,3,H,W] in [-1, 1] -> (codes [B, T], normalised latents [B,D,h,w], chosen codes [B,D,h,w])."""
    z = F.normalize(vq.quant_conv(vq.encoder(pixels)), dim=1)
    codebook = F.normalize(vq.quantize.embedding.weight, dim=1)
    flat = z.permute(0, 2, 3, 1).reshape(-1, z.shape[1])
    codes = (flat @ codebook.T).argmax(1)
    chosen = codebook[codes].view(z.shape[0], z.shape[2], z.shape[3], -1).permute(0, 3, 1, 2)
    return codes.view(z.shape[0], -1), z, chosen


@torch.no_grad()
def encode(vq, pixels: torch.Tensor, batch: int = 64) -> torch.Tensor:
    """Image tokens [N, T] of a stack of images, in batches."""
    return torch.cat([quantize(vq, pixels[i:i + batch])[0] for i in range(0, len(pixels), batch)])


def loss(vq, pixels: torch.Tensor, weights: torch.Tensor, quantized: bool = True) -> tuple:
    """(total loss, reconstruction loss, codes, latents). weights [B,1,H,W] weigh each pixel's absolute error
    (L1: sharper edges than squared error).
    quantized=False: the decoder gets the normalised latents themselves (the warm-up as a plain autoencoder)."""
    codes, z, chosen = quantize(vq, pixels)
    if not quantized:
        decoded = vq.decoder(vq.post_quant_conv(z))
        reconstruction = ((decoded - pixels).abs() * weights).mean()
        return reconstruction, reconstruction, codes, z
    decoded = vq.decoder(vq.post_quant_conv(z + (chosen - z).detach()))
    reconstruction = ((decoded - pixels).abs() * weights).mean()
    codebook = F.mse_loss(chosen, z.detach()) + BETA * F.mse_loss(z, chosen.detach())
    return reconstruction + codebook, reconstruction, codes, z


@torch.no_grad()
def init_codebook(vq, pixels: torch.Tensor, gen: torch.Generator, iterations: int = 20) -> None:
    """Codes at k-means centres (spherical: cosine) of the encoder's normalised latents over `pixels`."""
    z = torch.cat([quantize(vq, pixels[i:i + 64])[1] for i in range(0, len(pixels), 64)])
    flat = z.permute(0, 2, 3, 1).reshape(-1, z.shape[1])
    k = vq.quantize.embedding.weight.shape[0]
    centres = _farthest_points(flat[torch.randperm(len(flat), generator=gen)[:16 * k]], k)
    for _ in range(iterations):
        nearest = (flat @ centres.T).argmax(1)
        sums = torch.zeros_like(centres).index_add_(0, nearest, flat)
        counts = torch.bincount(nearest, minlength=k)
        empty = counts == 0
        centres = F.normalize(torch.where(empty[:, None], centres, sums), dim=1)
        if empty.any():  # an empty cluster restarts at a random latent
            centres[empty] = flat[torch.randint(0, len(flat), (int(empty.sum()),), generator=gen)]
    vq.quantize.embedding.weight.copy_(centres)


def _farthest_points(points: torch.Tensor, k: int) -> torch.Tensor:
    """k of the points, each the farthest (least cosine) from those chosen before it: a start that spreads the
    codes over the latents rather than over the background's many near-copies."""
    chosen = [0]
    closest = points @ points[0]
    for _ in range(k - 1):
        chosen.append(int(closest.argmin()))
        closest = torch.maximum(closest, points @ points[chosen[-1]])
    return points[chosen].clone()


class CodeRestarts:
    """Restarts codes that no batch chose for `patience` steps at random encoder outputs of the batch."""

    def __init__(self, size: int, patience: int, start: int = 0):
        self.last_used = torch.full((size,), start, dtype=torch.long)
        self.patience = patience

    @torch.no_grad()
    def update(self, vq, step: int, codes: torch.Tensor, latents: torch.Tensor, gen: torch.Generator) -> int:
        self.last_used[codes.unique()] = step
        dead = torch.nonzero(step - self.last_used >= self.patience).flatten()
        if len(dead):
            flat = latents.permute(0, 2, 3, 1).reshape(-1, latents.shape[1])
            picks = torch.randint(0, len(flat), (len(dead),), generator=gen)
            vq.quantize.embedding.weight[dead] = flat[picks]
            self.last_used[dead] = step
        return len(dead)


@torch.no_grad()
def normalise_codebook(vq) -> None:
    vq.quantize.embedding.weight.copy_(F.normalize(vq.quantize.embedding.weight, dim=1))


@torch.no_grad()
def decode(vq, codes: torch.Tensor) -> torch.Tensor:
    """Janus's own decode path (what the bundle's image_decode graph computes): codes [B, T] -> [B,3,H,W]."""
    return vq.decode(codes)
