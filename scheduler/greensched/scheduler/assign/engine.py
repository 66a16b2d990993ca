"""The exact sequential-semantics engine: per-hour greedy in vectorised rounds."""

from __future__ import annotations

import numpy as np


def _choose(key: np.ndarray, fallback: np.ndarray | None, fits: np.ndarray) -> np.ndarray:
    """Argmin of ``key`` over allowed DCs; ``fallback`` where no allowed key is finite; -1: none.

    Without a fallback, keys of allowed DCs must be finite (scores, exploration keys).
    """
    k = np.where(fits, key, np.inf)
    c = k.argmin(axis=1)
    finite = np.isfinite(k[np.arange(len(c)), c])
    if fallback is None:
        c[~finite] = -1
        return c
    any_fit = fits.any(axis=1)
    use_fb = any_fit & ~finite
    if use_fb.any():
        c[use_fb] = np.where(fits[use_fb], fallback[use_fb], np.inf).argmin(axis=1)
    c[~any_fit] = -1
    return c


def _commit_prefix(c: np.ndarray, u: np.ndarray, rem: np.ndarray) -> int:
    """Commit the longest prefix of choices that fits; return its length.

    Every job takes its chosen DC ``c`` (-1: none) in order; the prefix ends before the first
    job whose DC would overflow given the earlier jobs' usage.  ``rem`` is reduced by the
    committed prefix's usage (exact integer sums).
    """
    D = rem.shape[0]
    counts = np.bincount(c + 1, minlength=D + 1)[1:]
    present = np.flatnonzero(counts)
    first = len(c)
    cums: list[tuple[int, np.ndarray, np.ndarray]] = []
    for d in present:
        idx = np.flatnonzero(c == d)
        cs = np.cumsum(u[idx], axis=0)
        cums.append((int(d), idx, cs))
        if np.all(cs[-1] <= rem[d]):
            continue
        # cumsum is non-decreasing per resource: the first overflow is a searchsorted
        pos = min(
            int(np.searchsorted(cs[:, r], rem[d, r], side="right")) for r in range(u.shape[1])
        )
        first = min(first, int(idx[pos]))
    for dc, idx, cs in cums:
        n_ok = len(idx) if first == len(c) else int(np.searchsorted(idx, first))
        if n_ok:
            rem[dc] -= cs[n_ok - 1]
    return first


def _engine_hour(
    key: np.ndarray,
    fallback: np.ndarray | None,
    ok: np.ndarray,
    u: np.ndarray,
    rem: np.ndarray,
    min_window: int = 256,
) -> np.ndarray:
    """Sequential greedy over one hour's jobs (arrival order), computed in vectorised rounds.

    ``key`` (m, D): lower is preferred; ``ok`` (m, D): static mask; ``u`` (m, R) ticks;
    ``rem`` (D, R) ticks, updated in place.  Returns the chosen DC per job (-1: none).
    """
    m = key.shape[0]
    choice = np.full(m, -1, dtype=np.int64)
    if m == 0:
        return choice
    p, window = 0, m
    umax = u.max(axis=0)  # an upper bound for every window: tight DCs are a superset
    while p < m:
        q = min(m, p + window)
        ub = u[p:q]
        fits = ok[p:q].copy()
        tight = np.flatnonzero((rem < umax[None, :]).any(axis=1))
        if tight.size:
            # R is small: one (w, D) comparison per resource that some DC is short of
            for r in np.flatnonzero((rem[tight] < umax[None, :]).any(axis=0)):
                fits &= ub[:, r, None] <= rem[None, :, r]
        c = _choose(key[p:q], None if fallback is None else fallback[p:q], fits)
        t = _commit_prefix(c, ub, rem)
        choice[p : p + t] = c[:t]
        if t == q - p:
            p = q
            window *= 2
            continue
        i = p + t
        fi = ok[i] & (u[i][None, :] <= rem).all(axis=1)
        ci = int(
            _choose(key[i : i + 1], None if fallback is None else fallback[i : i + 1], fi[None, :])[
                0
            ]
        )
        choice[i] = ci
        if ci >= 0:
            rem[ci] -= u[i]
        p = i + 1
        window = max(min_window, 2 * t)
    return choice


def _allowed_at_turn(
    choice: np.ndarray, ok: np.ndarray, u: np.ndarray, rem_start: np.ndarray, chunk: int = 4096
) -> np.ndarray:
    """Which DCs were allowed for each job at its turn (static mask and room), shape (m, D)."""
    m, D = ok.shape
    out = np.empty_like(ok)
    rem = rem_start.copy()
    dcs = np.arange(D)
    for s in range(0, m, chunk):
        e = min(m, s + chunk)
        c, ub = choice[s:e], u[s:e]
        onehot = c[:, None] == dcs[None, :]
        contrib = ub[:, None, :] * onehot[:, :, None]
        before = np.cumsum(contrib, axis=0) - contrib
        room = rem[None, :, :] - before
        fits = ok[s:e].copy()
        for r in range(ub.shape[1]):
            fits &= ub[:, r, None] <= room[:, :, r]
        out[s:e] = fits
        rem -= contrib.sum(axis=0)
    return out


def _chunks(
    hours: np.ndarray,
    starts: np.ndarray,
    ends: np.ndarray,
    busy: set[int],
    parts: int = 32,
    least: int = 64,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Split each busy hour's range into up to ``parts`` chunks of at least ``least`` jobs."""
    out_h, out_s, out_e = [], [], []
    for h, s, e in zip(hours, starts, ends, strict=True):
        n = int(e) - int(s)
        step = max(least, -(-n // parts)) if int(h) in busy else max(n, 1)
        for a in range(int(s), int(e), step):
            out_h.append(h)
            out_s.append(a)
            out_e.append(min(int(e), a + step))
    return np.asarray(out_h), np.asarray(out_s), np.asarray(out_e)
