"""Char-level TextCNN (Kim 2014): embedding -> parallel 1-D convolutions -> max-over-time
pooling -> ReLU -> dropout -> linear, one logit per label.

Weights are the standard ones (`embedding.weight`, `convs.{i}.weight/bias`, `fc.weight/bias`),
but the forward pass is computed in factorized form, which is exact up to float rounding and
2-3x cheaper on CPU: a convolution over embeddings is linear in the one-hot input, so

    conv_k(emb(ids))[t] = bias_k + sum_{j<k} (E @ W_{k,j}^T)[ids[t+j]]

i.e. a sum of k row-gathers from per-offset tables `E @ W_{k,j}^T` (vocab x filters). In
training the tables are built only for the ids present in the batch; at inference
`precompute_tables()` builds them once per call for the whole vocabulary.

Max pooling is masked to each row's real length, so a row's score does not depend on how much
padding its mini-batch has (dynamic padding / batch size cannot change results). A window is
valid when it starts before max(len - k + 1, 1): a row shorter than k keeps its first window
(real chars + zero [PAD] embeddings)."""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

DEFAULT_HPARAMS = {
    "embed_dim": 128,
    "kernel_sizes": [2, 3, 4, 5],
    "num_filters": 128,
    "dropout": 0.5,
    "lowercase": True,
}


class TextCNN(nn.Module):
    """The char-level TextCNN of the module docstring: vocab_size embeddings of embed_dim, num_filters
    filters per kernel size, dropout, and a linear layer to num_labels logits. forward maps (B, T)
    long ids to (B, num_labels) float logits (no sigmoid)."""

    def __init__(self, vocab_size: int, num_labels: int, embed_dim: int = 128,
                 kernel_sizes: Sequence[int] = (2, 3, 4, 5), num_filters: int = 128,
                 dropout: float = 0.5, padding_idx: int = 0):
        super().__init__()
        self.kernel_sizes = [int(k) for k in kernel_sizes]
        self.num_filters = int(num_filters)
        self.embedding = nn.Embedding(vocab_size, embed_dim, padding_idx=padding_idx)
        self.convs = nn.ModuleList(nn.Conv1d(embed_dim, num_filters, k) for k in self.kernel_sizes)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(num_filters * len(self.kernel_sizes), num_labels)

    @property
    def min_width(self) -> int:
        """Inputs must be padded to at least this many positions."""
        return max(self.kernel_sizes)

    def _tables(self, emb: torch.Tensor) -> list[torch.Tensor]:
        """Per kernel: (rows, k * F) = emb @ [W_{k,0}^T | W_{k,1}^T | ...]."""
        out = []
        for k, conv in zip(self.kernel_sizes, self.convs):
            w = conv.weight.permute(1, 2, 0).reshape(emb.shape[1], k * self.num_filters)
            out.append(emb @ w)
        return out

    @torch.no_grad()
    def precompute_tables(self) -> list[torch.Tensor]:
        """Gather tables for the whole vocabulary (inference only; rebuild after any update)."""
        return self._tables(self.embedding.weight.float())

    def _valid_mask(self, lengths: torch.Tensor, k: int, width: int) -> torch.Tensor:
        valid = torch.clamp(lengths - k + 1, min=1)
        return torch.arange(width, device=lengths.device)[None, :] >= valid[:, None]  # True = drop

    def forward(self, input_ids: torch.Tensor, lengths: torch.Tensor | None = None,
                tables: list[torch.Tensor] | None = None) -> torch.Tensor:
        """input_ids: (B, T) long, T >= min_width; lengths: (B,) real lengths (None: all T);
        tables: from `precompute_tables()` (None: built from the batch's distinct ids)."""
        return self.fc(self.dropout(self.features(input_ids, lengths, tables)))

    def features(self, input_ids: torch.Tensor, lengths: torch.Tensor | None = None,
                 tables: list[torch.Tensor] | None = None) -> torch.Tensor:
        """The penultimate representation: (B, num_filters * len(kernel_sizes)) float, the ReLU of
        each filter's masked max over time, before dropout and the output layer (a kNN head's
        embedding, models/knn.py). Inputs as for forward."""
        B, T = input_ids.shape
        if T < self.min_width:
            input_ids = F.pad(input_ids, (0, self.min_width - T), value=self.embedding.padding_idx or 0)
            T = self.min_width
        if lengths is None:
            lengths = torch.full((B,), T, dtype=torch.long, device=input_ids.device)
        if tables is None:
            uniq, ids = torch.unique(input_ids, return_inverse=True)
            emb = F.embedding(uniq, self.embedding.weight, padding_idx=self.embedding.padding_idx)
            tables = self._tables(emb)
        else:
            ids = input_ids
        Fo = self.num_filters
        inplace = not torch.is_grad_enabled()
        pooled = []
        for k, conv, table in zip(self.kernel_sizes, self.convs, tables):
            width = T - k + 1
            h = F.embedding(ids[:, 0:width], table[:, 0:Fo])
            for j in range(1, k):
                g = F.embedding(ids[:, j:j + width], table[:, j * Fo:(j + 1) * Fo])
                h = h.add_(g) if inplace else h + g
            h = h + conv.bias.to(h.dtype)
            h = h.masked_fill(self._valid_mask(lengths, k, width)[:, :, None], float("-inf"))
            pooled.append(torch.relu(h.amax(dim=1)))
        return torch.cat(pooled, dim=1)

    def forward_conv(self, input_ids: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """Reference implementation with nn.Conv1d (same weights, same result up to rounding)."""
        x = self.embedding(input_ids).transpose(1, 2)  # (B, E, T)
        T = x.shape[-1]
        if lengths is None:
            lengths = torch.full((x.shape[0],), T, dtype=torch.long, device=x.device)
        pooled = []
        for k, conv in zip(self.kernel_sizes, self.convs):
            h = conv(x)  # (B, F, T-k+1)
            h = h.masked_fill(self._valid_mask(lengths, k, h.shape[-1])[:, None, :], float("-inf"))
            pooled.append(torch.relu(h.amax(dim=-1)))
        return self.fc(self.dropout(torch.cat(pooled, dim=1)))


def build_textcnn(vocab_size: int, num_labels: int, hparams: dict | None = None) -> TextCNN:
    """A freshly initialised TextCNN; `hparams` (embed_dim, kernel_sizes, num_filters, dropout)
    override DEFAULT_HPARAMS, other keys (lowercase) are ignored. Returned on the CPU, in training
    mode, with vocab_size embedding rows and num_labels outputs."""
    hp = {**DEFAULT_HPARAMS, **(hparams or {})}
    return TextCNN(vocab_size, num_labels, embed_dim=int(hp["embed_dim"]),
                   kernel_sizes=hp["kernel_sizes"], num_filters=int(hp["num_filters"]),
                   dropout=float(hp["dropout"]))
