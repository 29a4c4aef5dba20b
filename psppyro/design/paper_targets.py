r"""The PSP-GEN paper's target boxes and published design results, as printed.

Zang & Koutsourelakis (PSP-GEN) design for boxes :math:`M_d` in the property space
m = (ln k_xx, ln k_yy) (horizontal, vertical). This module records, per case, the boxes and the
paper's tables so that benchmarks can print "paper" columns next to their own figures:

=========  ==========================  =========================================================
case       source in the paper         boxes (m_1 range × m_2 range)
=========  ==========================  =========================================================
``case1``  §4.2, Table 1               L = [−10, −9] × [−7, −5], M = [−7, −5] × [−7, −5],
                                       R = [−7, −5] × [−10, −9]   (36², 10 000 triads)
``case3``  §4.4, Table 2               the boxes of case 1 (36², 2 500 triads)
``case4``  §4.5, Table 3               L = [−12.5, −11] × [−8, −5], M = [−8, −6] × [−8, −6],
                                       R = [−8, −5] × [−12.5, −11]   (128²)
``case5``  §4.6, Eq. (26) and text     low = [−10, −7] × [−10, −7], high = [−7, −4] × [−7, −4]
                                       (10-D φ; our reading of the printed boxes, below)
=========  ==========================  =========================================================

Each table gives, per box, the competitor's optimum φ_comp, PSP-GEN's φ_prop and the reference
optimum φ_ref of the 20 × 20 reference grid, each with p_{M_d} = P(m ∈ M_d | φ) estimated from the
reference data set (500 microstructures per grid point). Case 5 has no reference grid: its
probabilities come from 1 000 fresh simulations at φ_prop and φ_comp, and it has no φ_ref.
Case 2 (§4.3) is not included: its box is drawn in Figure 7 but never printed.

Readings of the printed text (where it is garbled):

* Case 5 prints the boxes as ":math:`M_d^{low} = [-10, -10] \times [-7, -7]`" and
  ":math:`M_d^{high} = [-7, -7] \times [-4, -4]`", degenerate intervals that no property vector
  could fall into with the reported 19.2 % / 24.7 %. We read each as a square box,
  low = [−10, −7]² ("low permeability in both directions") and high = [−7, −4]² ("high
  permeability in both directions"): the printed numbers are the (low, high) bounds and the
  same interval is meant for both components. :attr:`PaperDesign.printed` keeps the printed text.
* Case 5's φ_comp^low is printed "(1.046, 8.9954.802, 9.000, …)" with nine entries; we read
  "8.9954.802" as the two entries 8.995 and 4.802, which restores the ten components.

The paper's simulator is reconstructed by the ``-paper`` process presets and the
``log_permeability_paper`` property map (``docs/pspgen_reconstruction.md``); with the literal
presets these boxes are unreachable or trivial, so benchmarks that compare with the paper's numbers
should use the reconstruction.

Example::

    >>> boxes = paper_targets("case1")
    >>> sorted(boxes), boxes["L"]
    (['L', 'M', 'R'], Box(low=[-10, -7], high=[-9, -5]))
    >>> ref = paper_reference("case1")["M"]
    >>> ref.phi_ref, ref.p_ref
    ((4.789, 0.2), 0.302)
"""

from __future__ import annotations

from dataclasses import dataclass

from .targets import Box

__all__ = ["PAPER_CASES", "PaperDesign", "paper_reference", "paper_targets"]


@dataclass(frozen=True)
class PaperDesign:
    """One target box of the PSP-GEN paper with the design results printed for it.

    Probabilities are fractions (the paper's 81.2 % is ``0.812``); ``None`` where the paper gives
    no value (case 5 has no reference optimum).

    Attributes:
        case: ``"case1"``, ``"case3"``, ``"case4"`` or ``"case5"``.
        name: the box's name in the paper (``"L"``, ``"M"``, ``"R"``, ``"low"``, ``"high"``).
        low: lower corner (m_1, m_2) = (ln k_xx, ln k_yy).
        high: upper corner.
        phi_ref: reference optimum on the paper's 20 × 20 reference grid, or ``None``.
        p_ref: P(m ∈ M_d | φ_ref) from the reference data set, or ``None``.
        phi_prop: PSP-GEN's optimum.
        p_prop: P(m ∈ M_d | φ_prop) as printed.
        phi_comp: the competitor's optimum (2-point statistics + SV-MOGP + flow).
        p_comp: P(m ∈ M_d | φ_comp) as printed.
        source: where the numbers are printed (e.g. ``"Table 1"``).
        printed: the box as printed in the paper (differs from low/high only for case 5).

    Example::

        >>> import torch
        >>> d = paper_reference("case4")["R"]
        >>> d.box.contains(torch.tensor([[-6.0, -12.0]])).tolist(), d.p_prop
        ([True], 0.932)
    """

    case: str
    name: str
    low: tuple
    high: tuple
    phi_ref: tuple | None
    p_ref: float | None
    phi_prop: tuple
    p_prop: float
    phi_comp: tuple
    p_comp: float
    source: str
    printed: str

    @property
    def box(self) -> Box:
        """The target as a :class:`~psppyro.design.Box` (a new object on every access)."""
        return Box(low=list(self.low), high=list(self.high))


def _table(case, source, boxes, rows):
    """PaperDesign per box from boxes {name: (low, high, printed)} and rows {name: (ref, prop,
    comp)}, each entry a (phi, p) pair."""
    out = {}
    for name, (low, high, printed) in boxes.items():
        (phi_ref, p_ref), (phi_prop, p_prop), (phi_comp, p_comp) = rows[name]
        out[name] = PaperDesign(case, name, low, high, phi_ref, p_ref, phi_prop, p_prop,
                                phi_comp, p_comp, source, printed)
    return out


_CASE1_BOXES = {
    "L": ((-10.0, -7.0), (-9.0, -5.0), "[-10, -9] x [-7, -5]"),
    "M": ((-7.0, -7.0), (-5.0, -5.0), "[-7, -5] x [-7, -5]"),
    "R": ((-7.0, -10.0), (-5.0, -9.0), "[-7, -5] x [-10, -9]"),
}

# Rows per box: (phi_ref, p_ref), (phi_prop, p_prop), (phi_comp, p_comp), as printed.
_PAPER = {
    "case1": _table("case1", "Table 1", _CASE1_BOXES, {
        "L": (((1.000, 2.000), 0.812), ((1.009, 2.000), 0.812), ((1.883, 1.367), 0.658)),
        "M": (((4.789, 0.200), 0.302), ((5.152, 0.200), 0.286), ((5.335, 0.395), 0.274)),
        "R": (((9.000, 1.905), 0.838), ((8.999, 2.000), 0.792), ((8.052, 1.406), 0.634)),
    }),
    "case3": _table("case3", "Table 2", _CASE1_BOXES, {
        "L": (((1.000, 2.000), 0.812), ((1.001, 1.999), 0.812), ((2.095, 1.999), 0.672)),
        "M": (((4.789, 0.200), 0.302), ((4.683, 0.200), 0.302), ((5.373, 0.775), 0.196)),
        "R": (((9.000, 1.905), 0.838), ((8.999, 1.999), 0.792), ((8.967, 1.110), 0.624)),
    }),
    "case4": _table("case4", "Table 3", {
        "L": ((-12.5, -8.0), (-11.0, -5.0), "[-12.5, -11] x [-8, -5]"),
        "M": ((-8.0, -8.0), (-6.0, -6.0), "[-8, -6] x [-8, -6]"),
        "R": ((-8.0, -12.5), (-5.0, -11.0), "[-8, -5] x [-12.5, -11]"),
    }, {
        "L": (((1.000, 2.000), 0.954), ((1.013, 1.997), 0.954), ((1.347, 1.292), 0.816)),
        "M": (((5.211, 0.200), 0.614), ((4.996, 0.202), 0.602), ((6.803, 0.203), 0.352)),
        "R": (((9.000, 2.000), 0.932), ((8.987, 1.971), 0.932), ((8.502, 1.213), 0.776)),
    }),
    "case5": _table("case5", "Section 4.6, Eq. (26)", {
        "low": ((-10.0, -10.0), (-7.0, -7.0), "[-10, -10] x [-7, -7]"),
        "high": ((-7.0, -7.0), (-4.0, -4.0), "[-7, -7] x [-4, -4]"),
    }, {
        "low": (
            (None, None),
            ((1.000, 1.000, 1.000, 3.092, 1.000, 0.020, 0.020, 0.020, 0.020, 2.000), 0.192),
            ((1.046, 8.995, 4.802, 9.000, 5.036, 1.999, 2.000, 2.000, 2.000, 1.936), 0.180),
        ),
        "high": (
            (None, None),
            ((1.000, 3.055, 2.374, 8.952, 8.999, 0.020, 0.020, 0.024, 0.021, 0.095), 0.247),
            ((6.183, 7.512, 4.351, 8.999, 8.999, 2.000, 0.022, 1.999, 0.023, 2.000), 0.142),
        ),
    }),
}

#: The cases with printed target boxes.
PAPER_CASES = tuple(_PAPER)


def _check_case(case):
    if not isinstance(case, str) or case not in _PAPER:
        raise ValueError(
            f"case must be one of {list(PAPER_CASES)} (case 2's box is not printed in the paper), "
            f"got {case!r}"
        )


def paper_targets(case: str) -> dict[str, Box]:
    """The PSP-GEN paper's target boxes of one case, as printed (Tables 1–3, §4.6).

    ``"case1"`` and ``"case3"`` (§4.2 and §4.4, Tables 1 and 2) and ``"case4"`` (§4.5, Table 3)
    give ``{"L", "M", "R"}``; ``"case5"`` (§4.6) gives ``{"low", "high"}`` under the reading of
    the module docstring. Components are m = (ln k_xx, ln k_yy).

    Args:
        case: one of :data:`PAPER_CASES`.

    Returns:
        dict[str, Box]: new :class:`~psppyro.design.Box` objects by the paper's box names.

    Raises:
        ValueError: if ``case`` is not one of :data:`PAPER_CASES` (the message lists them).

    Example::

        >>> paper_targets("case4")["L"]
        Box(low=[-12.5, -8], high=[-11, -5])
        >>> sorted(paper_targets("case5"))
        ['high', 'low']
    """
    _check_case(case)
    return {name: d.box for name, d in _PAPER[case].items()}


def paper_reference(case: str) -> dict[str, PaperDesign]:
    """The PSP-GEN paper's published design results per box of one case (φ_ref, φ_prop, φ_comp, P).

    Sources: Table 1 (case 1), Table 2 (case 3), Table 3 (case 4), §4.6 Eq. (26) and the text
    after it (case 5, which has no reference optimum: ``phi_ref`` and ``p_ref`` are ``None``).

    Args:
        case: one of :data:`PAPER_CASES`.

    Returns:
        dict[str, PaperDesign]: by the paper's box names, in the paper's order.

    Raises:
        ValueError: if ``case`` is not one of :data:`PAPER_CASES` (the message lists them).

    Example::

        >>> rows = paper_reference("case1")
        >>> [(n, d.phi_ref, d.p_ref) for n, d in rows.items()][0]
        ('L', (1.0, 2.0), 0.812)
        >>> paper_reference("case5")["high"].p_prop
        0.247
    """
    _check_case(case)
    return dict(_PAPER[case])
