"""Deterministic k-medoids (PAM: greedy BUILD, then SWAP) on a distance matrix.

Used to pick the most representative semantic slots of a GLMix block: the slots are compared
by their assignment maps, and the medoids stand for groups of slots that cover the same pixels.
"""
from typing import Tuple

import torch
import torch.nn.functional as F


def cosine_distances(maps: torch.Tensor) -> torch.Tensor:
    """Pairwise ``1 - cosine similarity`` between flattened maps.

    Args:
        maps (Tensor): (S, ...) one map per item; everything after the first dim is flattened.

    Returns:
        Tensor: (S, S) distances in [0, 2], zero on the diagonal (float64).
    """
    flat = F.normalize(maps.reshape(maps.shape[0], -1).double(), dim=1)
    distances = (1 - flat @ flat.T).clamp_(min=0)
    distances.fill_diagonal_(0)
    return distances


def k_medoids(distances: torch.Tensor,
              k: int,
              max_iter: int = 100) -> Tuple[torch.Tensor, torch.Tensor]:
    """Partition items into ``k`` clusters around ``k`` distinct medoid items (PAM).

    BUILD picks the most central item, then repeatedly the item that lowers the total distance
    of all items to their nearest medoid the most; SWAP then exchanges a medoid for a
    non-medoid while the best such exchange lowers that total. Ties go to the lowest index,
    so the result is deterministic.

    Args:
        distances (Tensor): (S, S) symmetric, non-negative distances.
        k (int): Number of medoids, 1 <= k <= S.
        max_iter (int): Maximum number of swaps. Defaults to 100.

    Returns:
        tuple[Tensor, Tensor]: ``medoids`` (k,) distinct item indices, and ``labels`` (S,)
        the position in ``medoids`` of each item's cluster (every medoid is in its own cluster).
    """
    if distances.ndim != 2 or distances.shape[0] != distances.shape[1]:
        raise ValueError(f'distances must be a square (S, S) matrix, got shape '
                         f'{tuple(distances.shape)}.')
    num = distances.shape[0]
    if not isinstance(k, int) or not 1 <= k <= num:
        raise ValueError(f'k={k!r} medoids cannot be chosen among {num} items: use 1 <= k <= '
                         f'{num}.')
    distances = distances.double()

    # BUILD.
    medoids = [int(distances.sum(dim=1).argmin())]
    nearest = distances[medoids[0]].clone()
    for _ in range(1, k):
        gain = (nearest[None, :] - distances).clamp(min=0).sum(dim=1)
        gain[medoids] = -1  # never pick a medoid twice, even among duplicate items
        medoids.append(int(gain.argmax()))
        nearest = torch.minimum(nearest, distances[medoids[-1]])

    # SWAP: the best (medoid, candidate) exchange, while it lowers the total distance.
    cost = float(distances[:, medoids].min(dim=1).values.sum())
    for _ in range(max_iter):
        best = None
        for i in range(k):
            others = medoids[:i] + medoids[i + 1:]
            if others:
                kept = distances[:, others].min(dim=1).values
            else:
                kept = torch.full((num, ), float('inf'), dtype=distances.dtype)
            costs = torch.minimum(kept[:, None], distances).sum(dim=0)  # per candidate
            costs[medoids] = float('inf')
            candidate = int(costs.argmin())
            if float(costs[candidate]) < cost - 1e-12 and \
                    (best is None or float(costs[candidate]) < best[0]):
                best = (float(costs[candidate]), i, candidate)
        if best is None:
            break
        cost, i, candidate = best
        medoids[i] = candidate

    medoids = torch.tensor(medoids)
    labels = distances[:, medoids].argmin(dim=1)
    labels[medoids] = torch.arange(k)  # a medoid belongs to its own cluster
    return medoids, labels
