"""An exact adversary search for the neighbourhood round: fewest colluders for a breach.

The server's moves in the neighbourhood round, on a ring of n sites with
Harary degree k, threshold t, cohort cap m and local cap ℓ, written as a
0/1 integer program and solved exactly (scipy's HiGHS MILP), minimising
the number of colluders:

- any colluder set C, placed anywhere (the server picks the order);
- honest sites that drop before sharing (E: in nobody's share senders);
- for every honest site i, the share senders it is shown (u[i, j]: j's
  share delivered to i, so i holds it and masks with j), at most ℓ of its
  neighbours missing;
- whether i signs, and its own cohort-wide survivor list L[i] (any list:
  sites may be shown different lists), checked as the site checks it: i in
  it, at most m missing, at most ℓ of its holders missing, every holder in
  it a share sender of i;
- whether i releases, which needs (``signers``) as built, n - m sites of
  the cohort (``"quorum"``) and t of its holders to have signed exactly
  L[i]; or, the check the round used to have, all but ℓ of its k + 1
  holders and at least t (``"local"``); or only t of its holders
  (``"holders_t"``). Colluders sign anything that lists them, an honest
  site only the one list it signed;
- a releasing honest holder gives the b-share of each holder it lists and
  the s-share of each share sender it does not; colluding holders give both.

A breach is either a *split view* (some honest site has both its self mask
b and its masking key s rebuilt: t shares each) or a *partial sum*: a
non-empty set S of honest sites whose b are rebuilt, no split view, every
mask edge from S to an honest site outside S removable (that site's s is
rebuilt) and every edge inside S present both ways, with more than m
honest sites outside S. The cohort-wide round reveals the sum of all honest
survivors, at most m missing; S is what the server can unmask instead.
Several lists can each drop other sites, so a *cut* is the sharper breach:
a partial sum whose S leaves out an honest site that shared and that every
releasing site lists as surviving (dropped in nobody's view).

- the masked-with check (``securefl.secagg._masked_with``, ``masked_with``):
  an honest holder releases peer v's b-share only if v masked with every
  neighbour of v that the holder's list names (v's signed claim is the set
  of neighbours among its share senders, so: u[v, j] for each such j). It
  is on for the round as built (``signers="quorum"``) and off for the old
  checks unless asked for.

``rules`` removes a site check (for must-fail runs): ``"local_list"`` (no ℓ cap
on the holders missing from a list),
``"both_shares"`` (a holder may release both shares of a peer it lists),
``"masked_with"`` (no masked-with check, also for the round as built).
``"signed_senders"`` *adds* the masked-with check to the old checks (the
name it had before it was built).
The model gives the server every choice the protocol leaves it, so "no
breach with c colluders" is a proof for those parameters; a breach found is
a concrete attack (returned as the sets and lists).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import Bounds, LinearConstraint, milp
from scipy.sparse import coo_array


@dataclass
class _Program:
    names: dict[str, int] = field(default_factory=dict)
    rows: list[dict[int, float]] = field(default_factory=list)
    lo: list[float] = field(default_factory=list)
    hi: list[float] = field(default_factory=list)

    def var(self, name: str) -> int:
        if name not in self.names:
            self.names[name] = len(self.names)
        return self.names[name]

    def add(self, terms: dict[int, float], lo: float = -np.inf, hi: float = np.inf) -> None:
        row: dict[int, float] = {}
        for v, a in terms.items():
            row[v] = row.get(v, 0.0) + a
        self.rows.append(row)
        self.lo.append(lo)
        self.hi.append(hi)

    def le(self, terms: list[tuple[int, float]], bound: float) -> None:
        d: dict[int, float] = {}
        for v, a in terms:
            d[v] = d.get(v, 0.0) + a
        self.add(d, hi=bound)


@dataclass(frozen=True)
class Attack:
    """A breach found: who colludes, who drops, who releases which list."""

    kind: str
    colluders: tuple[int, ...]
    early: tuple[int, ...]
    releasing: dict[int, tuple[int, ...]]  # site -> sites missing from its list
    unmasked: tuple[int, ...]
    proven: bool = True
    """False when the time limit stopped the search: fewer colluders may still do."""
    lower_bound: float = 0.0
    """Colluders every breach needs, as far as the search proved it."""
    values: dict[str, int] = field(default_factory=dict)
    """Every variable of the program that is 1 (u{i},{j}: j's share reached i; L{i},{j}:
    i's list names j; bs/ss{h},{v}: h released v's b/s share; bk/sk{v}: rebuilt)."""


def _ring(n: int, k: int) -> list[list[int]]:
    return [[(i + d) % n for d in range(-k // 2, k // 2 + 1) if d != 0] for i in range(n)]


def search(
    n: int,
    k: int,
    t: int,
    m: int,
    ell: int,
    *,
    kind: str,
    max_colluders: int | None = None,
    rules: frozenset[str] = frozenset(),
    signers: str = "quorum",
    masked_with: bool | None = None,
    time_limit: float = 60.0,
) -> Attack | None:
    """The breach of ``kind`` ("split", "partial" or "cut") with the fewest colluders, or None.

    With ``max_colluders`` the search stops at the first breach within it
    (None then means none exists). ``masked_with`` (default: on exactly for
    the round as built, ``signers="quorum"``) models the masked-with check;
    ``rules={"masked_with"}`` takes it out.
    """
    if masked_with is None:
        masked_with = signers == "quorum"
    masked_with = (masked_with or "signed_senders" in rules) and "masked_with" not in rules
    nb = _ring(n, k)
    holders = [sorted([*nb[i], i]) for i in range(n)]
    p = _Program()
    c = [p.var(f"c{i}") for i in range(n)]
    e = [p.var(f"e{i}") for i in range(n)]
    g = [p.var(f"g{i}") for i in range(n)]
    r = [p.var(f"r{i}") for i in range(n)]
    bk = [p.var(f"bk{i}") for i in range(n)]
    sk = [p.var(f"sk{i}") for i in range(n)]
    lst = [[p.var(f"L{i},{j}") for j in range(n)] for i in range(n)]
    u = {(i, j): p.var(f"u{i},{j}") for i in range(n) for j in nb[i]}
    for i in range(n):
        p.le([(c[i], 1), (e[i], 1)], 1)
        p.le([(g[i], 1), (c[i], 1), (e[i], 1)], 1)
        p.le([(r[i], 1), (g[i], -1)], 0)
        # Share senders: no early dropout; an honest site misses at most ℓ neighbours.
        for j in nb[i]:
            p.le([(u[i, j], 1), (e[j], 1)], 1)
        p.le([(u[i, j], -1) for j in nb[i]] + [(c[i], -k), (e[i], -k)], ell - k)
        # A signer's list: itself in it, at most m missing, holders in it are share senders.
        p.le([(g[i], 1), (lst[i][i], -1)], 0)
        p.le([(lst[i][j], -1) for j in range(n)] + [(g[i], n)], m)  # n - sum L <= m if g
        for j in nb[i]:
            p.le([(lst[i][j], 1), (u[i, j], -1), (g[i], 1)], 1)
        if "local_list" not in rules:
            p.le([(lst[i][j], -1) for j in nb[i]] + [(g[i], k)], ell)
    if signers == "quorum":
        _one_list_quorum(p, n, t, m, holders, c, g, r, lst, max_colluders)
    else:
        _holders_signed(p, n, t, k, ell, holders, c, g, r, lst, signers)
    # Shares released of each honest site that shared.
    for v in range(n):
        b_terms: list[tuple[int, float]] = [(bk[v], float(t)), (r[v], -1.0)]
        s_terms: list[tuple[int, float]] = [(sk[v], float(t))]
        for h in nb[v]:
            b_terms.append((c[h], -1.0))
            s_terms.append((c[h], -1.0))
            bs, ss = p.var(f"bs{h},{v}"), p.var(f"ss{h},{v}")
            p.le([(bs, 1), (r[h], -1)], 0)
            p.le([(bs, 1), (lst[h][v], -1)], 0)
            p.le([(ss, 1), (r[h], -1)], 0)
            p.le([(ss, 1), (u[h, v], -1)], 0)
            if "both_shares" not in rules:
                p.le([(ss, 1), (lst[h][v], 1)], 1)
            p.le([(ss, 1), (c[h], 1)], 1)
            p.le([(bs, 1), (c[h], 1)], 1)
            if masked_with:  # v masked with every neighbour j of v that h's list names
                for j in nb[v]:
                    p.le([(bs, 1), (lst[h][j], 1), (u[v, j], -1)], 1)
            b_terms.append((bs, -1.0))
            s_terms.append((ss, -1.0))
        p.le(b_terms, 0)
        p.le(s_terms, 0)
        p.le([(bk[v], 1), (c[v], 1), (e[v], 1)], 1)
        p.le([(sk[v], 1), (c[v], 1), (e[v], 1)], 1)
    if kind == "split":
        p.add({bk[0]: 1.0}, lo=1.0)
        p.add({sk[0]: 1.0}, lo=1.0)
    else:
        ins = [p.var(f"in{i}") for i in range(n)]
        for i in range(n):
            p.le([(bk[i], 1), (sk[i], 1)], 1)  # no split view (searched on its own)
            p.le([(ins[i], 1), (bk[i], -1)], 0)
            for j in nb[i]:
                # an edge S -> honest j outside S is removable only through s_j
                p.le([(ins[i], 1), (u[i, j], 1), (ins[j], -1), (sk[j], -1), (c[j], -1)], 1)
                # inside S the edge is present both ways or not at all
                p.le([(ins[i], 1), (ins[j], 1), (u[i, j], 1), (u[j, i], -1)], 2)
        p.add({ins[0]: 1.0}, lo=1.0)  # the ring is symmetric: S holds position 0
        if kind == "partial":  # more than m honest sites outside S
            p.le([(ins[i], 1) for i in range(n)] + [(c[i], 1) for i in range(n)], n - m - 1)
        else:  # "cut": S leaves out a site that every releasing site lists as surviving
            w = [p.var(f"w{i}") for i in range(n)]
            for i in range(n):
                p.le([(w[i], 1), (ins[i], 1), (c[i], 1), (e[i], 1)], 1)
                for h in range(n):
                    p.le([(w[i], 1), (r[h], 1), (lst[h][i], -1)], 1)
            p.add({w[i]: 1.0 for i in range(n)}, lo=1.0)
    if masked_with and signers == "quorum" and max_colluders is not None and max_colluders < t:
        _masked_with_cuts(p, n, m, nb, kind, c, bk, sk, u)
    if max_colluders is not None:
        p.le([(c[i], 1) for i in range(n)], max_colluders)
    nv = len(p.names)
    cost = np.zeros(nv)
    if max_colluders is None:  # else any breach within the cap will do: stop at the first
        cost[c] = 1.0
    data, ri, ci = [], [], []
    for row_i, row in enumerate(p.rows):
        for v, a in row.items():
            ri.append(row_i)
            ci.append(v)
            data.append(a)
    a_mat = coo_array((data, (ri, ci)), shape=(len(p.rows), nv)).tocsr()
    res = milp(
        cost,
        constraints=LinearConstraint(a_mat, np.array(p.lo), np.array(p.hi)),
        integrality=np.ones(nv),
        bounds=Bounds(0, 1),
        options={"time_limit": time_limit, "disp": False},
    )
    if res.x is None:
        if res.status not in (2,):  # 2: infeasible
            raise RuntimeError(f"search did not finish: {res.message}")
        return None
    x = np.round(res.x).astype(int)
    ax = a_mat @ x
    if np.any(ax < np.array(p.lo) - 1e-6) or np.any(ax > np.array(p.hi) + 1e-6):
        raise RuntimeError("the solver's breach violates the model")  # never trust it blindly

    def val(name: str) -> int:
        return int(x[p.names[name]])

    releasing = {
        i: tuple(j for j in range(n) if not val(f"L{i},{j}")) for i in range(n) if val(f"r{i}")
    }
    unmasked = tuple(i for i in range(n) if val(f"in{i}")) if kind != "split" else (0,)
    return Attack(
        kind=kind,
        colluders=tuple(i for i in range(n) if val(f"c{i}")),
        early=tuple(i for i in range(n) if val(f"e{i}")),
        releasing=releasing,
        unmasked=unmasked,
        proven=res.status == 0,
        lower_bound=float(getattr(res, "mip_dual_bound", 0.0) or 0.0),
        values={name: 1 for name, i in p.names.items() if x[i]},
    )


def _holders_signed(
    p: _Program,
    n: int,
    t: int,
    k: int,
    ell: int,
    holders: list[list[int]],
    c: list[int],
    g: list[int],
    r: list[int],
    lst: list[list[int]],
    signers: str,
) -> None:
    """Release needs t of the holders (all but ℓ of them for ``"local"``) signing this list."""
    need = t if signers == "holders_t" else max(k + 1 - ell, t)
    for i in range(n):
        signed = []
        for h in holders[i]:
            sg = p.var(f"sg{i},{h}")
            signed.append((sg, -1.0))
            p.le([(sg, 1), (lst[i][h], -1)], 0)
            if h == i:
                p.le([(sg, 1), (g[i], -1)], 0)
                continue
            q = p.var(f"q{i},{h}")  # honest h signed the list i holds
            p.le([(sg, 1), (c[h], -1), (q, -1)], 0)
            p.le([(q, 1), (g[h], -1)], 0)
            for j in range(n):
                p.le([(lst[h][j], 1), (lst[i][j], -1), (q, 1)], 1)
                p.le([(lst[i][j], 1), (lst[h][j], -1), (q, 1)], 1)
        p.le([*signed, (r[i], need)], 0)


def _one_list_quorum(
    p: _Program,
    n: int,
    t: int,
    m: int,
    holders: list[list[int]],
    c: list[int],
    g: list[int],
    r: list[int],
    lst: list[list[int]],
    max_colluders: int | None,
) -> None:
    """Release as built: n - m of the cohort and t of the holders signed this very list.

    Below n - 2m colluders every release is under one list: two lists with
    n - m signers each share n - 2m of them, and an honest site signs one
    list, so the shared signers are colluders. The program therefore has
    one list G (variables ``G{j}``) that every releasing site holds; an
    honest site counts as its signer (``s{h}``) only if its own list is G,
    a colluder (``cl{h}``) if G lists it. Exact only below n - 2m colluders.
    """
    if max_colluders is None or max_colluders >= n - 2 * m:
        raise ValueError("the one-list quorum model holds below n - 2m colluders only")
    one = [p.var(f"G{j}") for j in range(n)]
    sgn = [p.var(f"s{h}") for h in range(n)]
    cl = [p.var(f"cl{h}") for h in range(n)]
    any_release = p.var("released")
    for h in range(n):
        p.le([(sgn[h], 1), (g[h], -1)], 0)
        p.le([(cl[h], 1), (c[h], -1)], 0)
        p.le([(cl[h], 1), (one[h], -1)], 0)
        for j in range(n):
            p.le([(lst[h][j], 1), (one[j], -1), (sgn[h], 1)], 1)
            p.le([(one[j], 1), (lst[h][j], -1), (sgn[h], 1)], 1)
    for i in range(n):
        p.le([(r[i], 1), (sgn[i], -1)], 0)
        p.le([(r[i], 1), (any_release, -1)], 0)
        mine = [(sgn[h], -1.0) for h in holders[i]] + [(cl[h], -1.0) for h in holders[i]]
        p.le([*mine, (r[i], t)], 0)
    everyone = [(sgn[h], -1.0) for h in range(n)] + [(cl[h], -1.0) for h in range(n)]
    p.le([*everyone, (any_release, n - m)], 0)


def _masked_with_cuts(
    p: _Program,
    n: int,
    m: int,
    nb: list[list[int]],
    kind: str,
    c: list[int],
    bk: list[int],
    sk: list[int],
    u: dict[tuple[int, int], int],
) -> None:
    """Inequalities the one-list model with the masked-with check implies (fewer than t
    colluders): they cut no solution off, only help the solver prove that none exists.

    With fewer than t colluders, a rebuilt secret needs a share from an honest
    releasing site, which holds the one list G. A rebuilt b_v so means some
    honest site released it under G: v itself (whose list names only share
    senders) or a holder (masked-with check); either way G names no neighbour
    j that v did not mask with. A rebuilt s_j means an honest holder released
    it, so G does not name j, and a rebuilt b_v that v is named. In a partial
    sum (a release happened, so G misses at most m) an edge from S to an
    honest j outside S is removable only through s_j: G names no such j.
    Without them HiGHS proves the n = 16, k = 6, t = 5, m = 2 partial-sum
    case with 3 colluders infeasible too, in about 8 minutes instead of 5 s.
    """
    one = [p.var(f"G{j}") for j in range(n)]
    for v in range(n):
        p.le([(sk[v], 1), (one[v], 1)], 1)
        p.le([(bk[v], 1), (one[v], -1)], 0)  # a b-share is released only of a listed site
        for j in nb[v]:
            p.le([(bk[v], 1), (one[j], 1), (u[v, j], -1)], 1)
    if kind == "split":
        return
    p.le([(one[j], -1) for j in range(n)], m - n)  # a release happened: G misses at most m
    ins = [p.var(f"in{i}") for i in range(n)]
    for v in range(n):
        for j in nb[v]:
            p.le([(ins[v], 1), (one[j], 1), (ins[j], -1), (c[j], -1)], 1)
