"""One model's per-step uncertainties from its readout features in one matrix product.

The MD hot path (:class:`~equipot.uq.estimate.UncertainPredictor` on one model) needs, every
step, σ(E_s), σ(E_i), the latent distance d_i and the force ball. All are norms of affine maps
of the features x_i = φ̃_i (D,), so they fold into one (D, B·D) matrix M and offset b:

    y_i = x_i M − b = [x_i W | (x_i − μ_1) A_1 | … | (x_i − μ_E) A_E]        (B = 1 + E blocks)

with W = V diag(τ_E²/(g + λ))^½ from the posterior's eigen-decomposition G = V diag(g) Vᵀ, so
σ²(E_i) = ‖x_i W‖² and σ²(E_s) = ‖Σ_{i∈s} x_i W‖² (:mod:`equipot.uq.llpr`), and A_z = L_z⁻ᵀ/√D,
so d_i = ‖(x_i − μ_{z_i}) A_{z_i}‖ (:mod:`equipot.uq.latent`; each atom keeps the block of its
own element). The ball is σ_i = (score_i² + floor²)^½, R_i = q̂ σ_i (:mod:`equipot.uq.conformal`).

The general path costs some forty small tensor operations per step; on a 9-atom molecule those
cost as much as a third of the model's step. Here the fold is one product and a few norms, in
one C++ call where the kernels are built (``kernels/uq_scores.cpp``; ≈ 35 µs of a 3-atom
step in place, against ≈ 80 µs for the same fold as PyTorch operations), else in PyTorch. Both
equal the general path's results (tested).
"""

from __future__ import annotations

import torch
from torch import Tensor

from equipot.graph import AtomicGraph
from equipot.kernels import cpu_kernels
from equipot.uq.store import Uncertainty

ENTRY_LIMIT = 1 << 22  # N·B·D entries (32 MB in float64); beyond it, the general path


class LocalScores:
    """The folded maps of one model's :class:`Uncertainty` (module docstring). Applies when
    the ball, if any, uses the ``local`` or ``latent`` score."""

    def __init__(self, uncertainty: Uncertainty):
        self.uncertainty = uncertainty
        post, latent, ball = uncertainty.posterior, uncertainty.latent, uncertainty.ball
        blocks, offsets = [], []
        if post is not None:
            g, vectors = post.eig()
            blocks.append(vectors * (post.energy_scale / (g + post.regularizer)).sqrt())
            offsets.append(torch.zeros(len(g), dtype=torch.float64))
        self.latent_table: Tensor | None = None
        if latent is not None:
            inverse, self.latent_table = latent.whitening_tables()
            for k in range(len(latent.atomic_numbers)):
                a = inverse[k].T / latent.num_features**0.5
                blocks.append(a)
                offsets.append(latent.means[k] @ a)
        self.dim = int(blocks[0].shape[0]) if blocks else 0
        self.matrix = torch.cat(blocks, 1) if blocks else None
        self.offset = torch.cat(offsets) if blocks else None
        self.has_posterior, self.has_latent = post is not None, latent is not None
        self.ball = ball
        self._numbers: Tensor | None = None
        self._columns: Tensor | None = None
        self._absent: Tensor | None = None
        self._floor: Tensor | None = None
        self._kernel_columns = torch.empty(0, dtype=torch.long)
        self._ball_code = 0 if ball is None else (1 if ball.score == "local" else 2)

    @staticmethod
    def applies(uncertainty: Uncertainty | None) -> bool:
        if uncertainty is None:
            return False
        post, latent, ball = uncertainty.posterior, uncertainty.latent, uncertainty.ball
        if ball is None:
            return post is not None or latent is not None
        return (ball.score == "local" and post is not None) or (
            ball.score == "latent" and latent is not None
        )

    def _latent_columns(self, numbers: Tensor) -> tuple[Tensor, Tensor | None]:
        """Per-atom column of its element's block (N, 1), and the mask of elements absent from
        the fit (or None); cached for the last atomic numbers (MD: the same every step)."""
        cached = self._numbers
        if cached is not None and cached.shape == numbers.shape and torch.equal(cached, numbers):
            return self._columns, self._absent  # compared by value: callers may edit in place
        table = self.latent_table
        z = numbers.cpu()
        row = torch.where(z < len(table), table[z.clamp_max(len(table) - 1)], -1)
        absent = row < 0
        first = 1 if self.has_posterior else 0
        self._numbers = numbers.clone()
        self._columns = (row.clamp_min(0) + first).unsqueeze(1).to(numbers.device)
        self._absent = absent.to(numbers.device) if bool(absent.any()) else None
        self._kernel_columns = torch.where(absent, -1, row + first)
        return self._columns, self._absent

    def fits(self, num_atoms: int) -> bool:
        return self.matrix is not None and num_atoms * self.matrix.shape[1] <= ENTRY_LIMIT

    def __call__(self, features: Tensor, graph: AtomicGraph) -> dict[str, Tensor]:
        """energy_std (S,), atomic_energy_std (N,), latent_distance (N,), force_sigma and
        force_radius (N,) — those the fits provide; float64."""
        x = features.detach().to(torch.float64)
        n, d = x.shape[0], self.dim
        kernels = cpu_kernels() if x.device.type == "cpu" else None
        if kernels is not None:
            return self._on_kernel(kernels, x, graph)
        if self.matrix.device != x.device:
            self.matrix, self.offset = self.matrix.to(x.device), self.offset.to(x.device)
        blocks = torch.addmm(self.offset, x, self.matrix, alpha=1.0, beta=-1.0).view(n, -1, d)
        norms = torch.linalg.vector_norm(blocks, dim=-1)  # (N, B); few ops: see module docstring
        out: dict[str, Tensor] = {}
        if self.has_posterior:
            energy_block = blocks[:, 0]
            if graph.num_systems == 1:
                summed = energy_block.sum(0, keepdim=True)
            else:
                summed = x.new_zeros(graph.num_systems, d).index_add_(0, graph.batch, energy_block)
            out["energy_std"] = torch.linalg.vector_norm(summed, dim=-1)
            out["atomic_energy_std"] = norms[:, 0]
        if self.has_latent:
            columns, absent = self._latent_columns(graph.atomic_numbers)
            distance = norms.gather(1, columns).squeeze(1)
            if absent is not None:
                distance = distance.masked_fill(absent, torch.inf)
            out["latent_distance"] = distance
        if self.ball is not None:
            score = norms[:, 0] if self.ball.score == "local" else distance
            if self._floor is None or self._floor.device != x.device:
                self._floor = torch.tensor(self.ball.floor, dtype=torch.float64, device=x.device)
            sigma = torch.hypot(score, self._floor)
            out["force_sigma"], out["force_radius"] = sigma, self.ball.quantile * sigma
        return out

    def _on_kernel(self, kernels, x: Tensor, graph: AtomicGraph) -> dict[str, Tensor]:
        """The same in one C++ call (kernels/uq_scores.cpp)."""
        if self.has_latent:
            self._latent_columns(graph.atomic_numbers)
        ball = self.ball
        energy, atomic, latent, sigma, radius = kernels.uq_scores(
            x,
            self.matrix,
            self.offset,
            self.dim,
            self.has_posterior,
            self._kernel_columns,  # empty without a latent fit
            graph.batch,
            graph.num_systems,
            self._ball_code,
            0.0 if ball is None else float(ball.floor),
            0.0 if ball is None else float(ball.quantile),
        )
        out: dict[str, Tensor] = {}
        if self.has_posterior:
            out["energy_std"], out["atomic_energy_std"] = energy, atomic
        if self.has_latent:
            out["latent_distance"] = latent
        if ball is not None:
            out["force_sigma"], out["force_radius"] = sigma, radius
        return out
