"""Evaluation protocols of the source papers: the attack list, budgets and sample counts a paper's
table uses, with the paper's own numbers to print beside a run's.

    jaxrobust evaluate --run-dir runs/cifar10_ascl --protocol ascl_cifar10
    jaxrobust list --protocols

A protocol names the dataset it is defined on (a run trained on other data is refused), its attack
specs (labels are the table's columns), and the paper's rows: method -> {column: value}, accuracies
in %, average precision in [0, 1]. ``paper_row(protocol, method_section)`` picks the row a run's
method corresponds to. The attack lists are those of the protocol configs (one definition each).
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Mapping

from jaxrobust.registries import lookup, nearest  # noqa: F401  (nearest re-exported for callers)


@dataclasses.dataclass(frozen=True)
class Protocol:
  """One paper table's evaluation.

  name: registry name. paper: citation and table. dataset: the ``data.name`` it is defined on.
  attacks: evaluator attack specs (labels = the table's columns). columns: the table's columns in
  order, 'clean' first; a column the run leaves empty (an attack the library lacks, such as mul-BIM, or
  one that needs an extra input, such as AdAP's surrogate) is listed in ``missing``, and ``notes`` says why. reference: paper row -> {column: value}. rows: method name -> paper row (a callable
  of the method section for methods whose row depends on a hyper-parameter). metric: 'accuracy'
  (the robust evaluator) or 'ap' (robust average precision, AdAP). r_div: also report R-DIV under
  ``r_div`` (the attack label). ensemble_success: for an ensemble, the attack label whose A-All / A-Avg (the % of
  points where every / an average member is fooled, Bui et al. 2023) become columns. ensemble_success_each: labels
  whose A-All / A-Avg become columns '<label> A-All' / '<label> A-Avg' (a table with one column pair per attack).
  members: the number of separately trained runs the paper's ensemble has (``--run-dir`` once per member), or None
  for a protocol of one run. transferability: the label
  prefix of the attacks crafted on each member ('<prefix> member i') and on the ensemble ('<prefix>'), whose
  CCE Table 6 figures (T, S11, S10, S01, S00, nT, a_single) become columns. clean_logits: 'model' (the model's logits) or 'unnormalized_cosine'
  (SPAT's code: a cosine-head model's clean accuracy on normalize=False logits, features not
  normalised; the attacks still see the model's logits). notes: what differs from the paper's own evaluation.
  """
  name: str
  paper: str
  dataset: str
  attacks: tuple
  columns: tuple
  reference: Mapping[str, Mapping[str, float]]
  rows: Mapping[str, str | Callable[[dict], str]] = dataclasses.field(default_factory=dict)
  metric: str = "accuracy"
  r_div: str | None = None
  ensemble_success: str | None = None
  ensemble_success_each: tuple = ()
  members: int | None = None
  transferability: str | None = None
  clean_logits: str = "model"
  missing: tuple = ()
  notes: str = ""


def _row(values: str, columns: tuple) -> dict:
  return dict(zip(columns, (float(v) for v in values.split())))


def _table(columns: tuple, rows: dict) -> dict:
  return {name: _row(values, columns) for name, values in rows.items()}


def _mail_row(method: dict) -> str:
  """MAIL-AT/-TRADES in Table 2; the other weightings in Table 1's columns."""
  base = method["name"].split("_", 1)[1]
  pm = method.get("pm", "adv")
  if pm == "adv" and base in ("at", "trades"):
    return f"MAIL-{base.upper()}"
  return {"at": "AT", "trades": "TRADES", "mart": "MART"}[base] + "-" + {"adv": "PM_adv", "nat": "PM_nat"}.get(
      pm, pm.upper())


def _mail() -> Protocol:
  from jaxrobust.configs.cifar10_mail_at import mail_eval_attacks
  cols = ("clean", "PGD-100", "APGD-CE", "CW-Linf", "AA")
  reference = _table(cols, {"AT": "84.86 48.91 47.70 51.61 44.90", "TRADES": "84.00 52.66 52.37 52.30 48.10",
                            "MART": "82.28 53.50 52.73 51.59 48.40", "FAT": "87.97 46.78 46.68 49.92 43.90",
                            "GAIRAT": "83.22 54.81 50.95 39.86 33.35", "MAIL-AT": "83.15 55.25 53.20 47.81 44.10",
                            "MAIL-TRADES": "81.84 53.68 52.92 52.89 50.03"})
  table1 = ("clean", "PGD-100", "AA")  # Table 1: LPS vs PM weights (5 trials)
  reference.update(_table(table1, {
      "AT-LPS": "82.26 54.14 36.32", "AT-PM_nat": "82.50 55.00 44.25",
      "MART-LPS": "84.45 53.16 46.00", "MART-PM_nat": "83.75 53.63 46.70", "MART-PM_adv": "84.12 53.65 47.20",
      "TRADES-LPS": "78.52 51.67 44.40", "TRADES-PM_nat": "82.71 52.37 49.52"}))
  return Protocol(
      name="mail_cifar10", paper="MAIL (Liu et al. 2021), Tables 1 and 2: CIFAR-10, ResNet-18, eps 8/255",
      dataset="cifar10", attacks=tuple(mail_eval_attacks()), columns=cols, reference=reference,
      rows={"pgd_at": "AT", "trades": "TRADES", "mart": "MART", "fat": "FAT", "gairat": "GAIRAT",
            "mail_at": _mail_row, "mail_trades": _mail_row, "mail_mart": _mail_row},
      notes="The paper's PGD column is PGD-100; PGD-20 is reported too. Table 1 rows (LPS / PM weights) "
            "come from method.pm=lps / nat / adv of mail_at, mail_trades, mail_mart.")


def _spat_cifar10() -> Protocol:
  from jaxrobust.configs.cifar10_spat import spat_eval_attacks
  cols = ("clean", "FGSM", "PGD-20", "PGD-100", "MIM-20", "FAB", "CW-Linf", "AA")
  return Protocol(
      name="spat_cifar10", paper="SPAT (Hou et al. 2023), Table 6: CIFAR-10, ResNet-18, white-box, eps 8/255",
      dataset="cifar10", attacks=tuple(spat_eval_attacks()), columns=cols,
      reference=_table(cols, {"Madry": "84.35 54.23 46.70 45.73 47.03 47.67 48.62 46.90",
                              "TRADES": "82.12 56.49 51.82 50.21 51.25 48.21 49.96 47.32",
                              "MART": "83.08 60.19 54.87 52.97 53.91 48.62 51.23 47.87",
                              "GAIRAT": "83.14 60.03 54.85 52.68 53.44 37.11 40.73 35.90",
                              "MAIL-AT": "83.80 61.33 55.06 53.26 54.57 45.55 48.67 44.32",
                              "SPAT": "84.08 61.71 58.33 58.11 58.93 48.54 50.60 48.09"}),
      rows={"pgd_at": "Madry", "trades": "TRADES", "mart": "MART", "gairat": "GAIRAT", "mail_at": "MAIL-AT",
            "spat": "SPAT"}, clean_logits="unnormalized_cosine",
      notes="For a cosine-head model 'clean' is on normalize=False logits as SPAT's eval_test computes it; "
            "'clean (model logits)' is the accuracy of the logits the attacks see.")


def _spat_mnist() -> Protocol:
  from jaxrobust.configs.mnist_trades import mnist_eval_attacks
  cols = ("clean", "FGSM", "PGD-20", "CW-Linf")
  attacks = tuple(a for a in mnist_eval_attacks() if a["label"] in cols)
  return Protocol(
      name="spat_mnist", paper="SPAT (Hou et al. 2023), Table 4: MNIST, SmallCNN, white-box, eps 0.3",
      dataset="mnist", attacks=attacks, columns=cols,
      reference=_table(cols, {"SPAT": "99.21 98.12 96.64 96.57", "TRADES": "99.10 97.42 96.22 96.01",
                              "MART": "98.89 97.70 96.24 96.33"}),
      rows={"spat": "SPAT", "trades": "TRADES", "mart": "MART"}, clean_logits="unnormalized_cosine")


_UDR_ROWS = {"pgd_at": "PGD-AT", "udr_pgd": "UDR-PGD", "trades": "TRADES", "udr_trades": "UDR-TRADES",
             "mart": "MART", "udr_mart": "UDR-MART", "wrm": "WRM"}


def _udr(dataset: str) -> Protocol:
  from jaxrobust.configs.cifar10_udr import udr_eval_attacks
  cols = ("clean", "PGD-200", "AA", "B&B")
  if dataset == "mnist":
    attacks = udr_eval_attacks(eps=0.3, step=0.01, aa_max_examples=1000)
    values = {"PGD-AT": "99.4 94.0 88.9 91.3", "UDR-PGD": "99.5 94.3 90.0 91.4", "TRADES": "99.4 95.1 90.9 92.2",
              "UDR-TRADES": "99.4 96.9 92.2 95.2", "MART": "99.3 94.7 90.6 92.9", "UDR-MART": "99.3 96.0 92.3 94.4",
              "WRM": "91.8 27.1 4.5 8.2"}
    setting = "MNIST, SmallCNN, eps 0.3"
  elif dataset == "cifar100":
    from jaxrobust.configs.cifar100_udr import EPS, STEP
    attacks = udr_eval_attacks(eps=EPS, step=STEP, aa_max_examples=1000)
    values = {"PGD-AT": "72.4 41.7 39.3 39.6", "UDR-PGD": "73.5 45.1 41.9 42.3", "TRADES": "68.1 49.7 46.7 47.2",
              "UDR-TRADES": "69.6 49.9 47.8 48.7", "MART": "68.1 49.8 44.8 45.4", "UDR-MART": "67.5 52.0 48.5 48.6",
              "WRM": "56.6 24.7 21.3 22.9"}
    setting = "CIFAR-100, ResNet-18, eps 0.01"
  else:
    attacks = udr_eval_attacks(aa_max_examples=1000)
    values = {"PGD-AT": "86.4 46.0 42.5 44.2", "UDR-PGD": "86.4 48.9 44.8 46.0", "TRADES": "80.8 51.9 49.1 50.2",
              "UDR-TRADES": "84.4 53.6 49.9 51.0", "MART": "81.9 53.3 48.2 49.3", "UDR-MART": "80.1 54.1 49.1 50.4",
              "WRM": "83.7 40.9 39.8 41.4"}
    setting = "CIFAR-10, ResNet-18, eps 8/255"
  return Protocol(
      name=f"udr_{dataset}", paper=f"UDR (Bui et al. 2022), Table 1: {setting}; PGD-200 on the test set, AA on 1000"
      " (WRM: Table 9)", dataset=dataset, attacks=tuple(attacks), columns=cols, reference=_table(cols, values),
      rows=_UDR_ROWS, notes="B&B: foolbox's trust region scales with the batch size, the library's with the input "
      "size only (jaxrobust.attacks.brendel_bethge). The WRM row is the paper's Table 9 (gamma tuned per dataset).")


def _adr(dataset: str) -> Protocol:
  if dataset == "mnist":
    from jaxrobust.configs.mnist_adr import get_config
    cols = ("clean", "PGD-40 eps=0.3", "mPGD-40 eps=0.3", "PGD-40 eps=0.325", "mPGD-40 eps=0.325")
    reference = {"ADV": {"PGD-40 eps=0.3": 94.15}, "ADR-ADV": {"PGD-40 eps=0.3": 96.55},
                 "TRADES": {"PGD-40 eps=0.3": 93.64}, "ADR-TRADES": {"PGD-40 eps=0.3": 95.71},
                 "ADR +LC/GB/CA (Table 1)": {"clean": 99.36, "PGD-40 eps=0.325": 94.96},
                 "ADR-None = ADV (Table 1)": {"clean": 99.27, "PGD-40 eps=0.325": 88.1},
                 "Standard": {"clean": 99.5, "PGD-40 eps=0.325": 0.84}}
    paper = "ADR (Bui et al. 2020), Fig. 6 (eps 0.3, eta 0.01) and Table 1 (eps 0.325): MNIST, CNN-4C3F(32)"
    name = "adr_mnist"
  else:
    from jaxrobust.configs.cifar10_adr import get_config
    cols = ("clean", "PGD-20", "mPGD-20", "AA")
    reference = _table(cols[:3], {"Standard": "92.51 0.00 0.00", "ADV": "78.84 44.08 41.20",
                                  "TRADES": "83.27 37.52 35.05", "ADR-ADV": "78.43 44.72 41.43",
                                  "ADR-TRADES": "82.02 40.17 37.70"})
    paper = "ADR (Bui et al. 2020), Table 2, ResNet columns: CIFAR-10, PGD-20 eps 0.031 eta 0.007 (NT / MT)"
    name = "adr_cifar10"
  return Protocol(name=name, paper=paper, dataset=dataset, attacks=tuple(get_config()["eval"]["attacks"]),
                  columns=cols, reference=reference,
                  rows={"standard": "Standard", "pgd_at": "ADV", "trades": "TRADES", "adr_adv": "ADR-ADV",
                        "adr_trades": "ADR-TRADES"})


def _ascl_row(method: dict) -> str:
  strategy = method.get("strategy", "leaked")
  return {"leaked": "Leaked-ASCL", "global": "ASCL (Global)", "hard": "ASCL (Hard)", "soft": "ASCL (Soft)"}.get(
      strategy, f"ASCL ({strategy})")


def _ascl(dataset: str) -> Protocol:
  from jaxrobust.configs.cifar10_ascl import ascl_eval_attacks
  cols = ("clean", "PGD-250", "mPGD-250", "AA", "B&B")
  if dataset == "cifar100":
    attacks = ascl_eval_attacks(0.01, 0.001)
    values = {"ADV": "60.7 35.7 25.3 25.7", "TRADES": "59.0 37.2 25.3 25.7", "ADR": "59.1 40.0 29.1 28.6",
              "Leaked-ASCL": "59.0 42.5 31.1 31.9"}
    setting = "CIFAR-100, ResNet-20, eps 0.01"
  else:
    attacks = ascl_eval_attacks()
    values = {"ADV": "78.8 48.1 36.4 36.1", "TRADES": "76.1 51.9 38.2 36.3", "ADR": "76.8 51.5 38.9 38.6",
              "Leaked-ASCL": "75.5 53.7 41.0 42.0", "ASCL (Global)": "76.4 52.7 40.4 40.9",
              "ASCL (Hard)": "75.5 53.1 41.0 41.3", "ASCL (Soft)": "75.5 53.4 40.6 40.4"}
    setting = "CIFAR-10, ResNet-20, eps 8/255 (Tables 2 and 4)"
  reference = _table(cols[:4], values)  # the paper reports no B&B figures (its code runs B&B on 1000 points)
  if dataset == "cifar10":  # R-DIV under PGD-250 (thesis sec. 2)
    for row, value in {"ADV": 0.64, "ADR": 0.63, "ASCL (Global)": 0.49, "Leaked-ASCL": 0.48}.items():
      reference[row]["R-DIV"] = value
    cols = cols + ("R-DIV",)
  return Protocol(
      name=f"ascl_{dataset}", paper=f"ASCL (Bui et al. 2021): {setting}; PGD / mPGD on the test set, AA on 1000",
      dataset=dataset, attacks=tuple(attacks), columns=cols, reference=reference,
      rows={"pgd_at": "ADV", "trades": "TRADES", "adr_adv": "ADR", "ascl": _ascl_row},
      r_div="PGD-250" if dataset == "cifar10" else None)


def _adap() -> Protocol:
  from jaxrobust.evaluate.average_precision import paper_attacks
  cols = ("clean", "PGD-10", "APGD-CE-10", "transfer PGD-20")
  values = {"CE Min.": {"clean": 0.8944, "PGD-10": 0.0526, "APGD-CE-10": 0.0524},
            "AP Max.": {"clean": 0.9007, "PGD-10": 0.0528, "APGD-CE-10": 0.0526, "transfer PGD-20": 0.1137},
            "PGD": {"clean": 0.4929, "PGD-10": 0.2765, "APGD-CE-10": 0.2670, "transfer PGD-20": 0.4594},
            "TRADES": {"clean": 0.5631, "PGD-10": 0.2884, "APGD-CE-10": 0.2839, "transfer PGD-20": 0.5148},
            "MART": {"clean": 0.4971, "PGD-10": 0.2859, "APGD-CE-10": 0.2721, "transfer PGD-20": 0.4624},
            "AdAP_LN": {"clean": 0.6345, "PGD-10": 0.2949, "APGD-CE-10": 0.2594, "transfer PGD-20": 0.5562},
            "AdAP_LPN": {"clean": 0.6526, "PGD-10": 0.3301, "APGD-CE-10": 0.3252, "transfer PGD-20": 0.6031}}
  return Protocol(
      name="adap_cifar10", paper="AdAP (Li, Tong, Yang 2023), Tables 2-4: CIFAR-10 one-vs-all, AP (mean of 10 classes)",
      dataset="cifar10", attacks=tuple(paper_attacks()), columns=cols, reference=values,
      rows={"bce": "CE Min.", "ap_max": "AP Max.", "pgd_binary": "PGD", "trades_binary": "TRADES",
            "mart_binary": "MART", "adap_ln": "AdAP_LN", "adap_lpn": "AdAP_LPN"},
      metric="ap", missing=("transfer PGD-20",),
      notes="Values are AP, the paper's mean over the 10 one-vs-all tasks; a run is one task. The transfer "
            "column needs the CE-trained source model: --source-run DIR.")


def _cce_row(method: dict) -> str:
  """Two-member rows of Tables 3-5 (members=3 has its own rows in the reference)."""
  name = method["name"]
  if name == "cce":
    return {"base": "CCE-Base_2", "dm": "CCE-DM_2"}.get(method.get("mode", "rm"), "CCE-RM_2")
  return {"pgd_at": "ADV_1", "adv_en": "ADV-EN_2", "adp": "ADP_2"}[name]


_TRANSFER_COLUMNS = ("T", "S11", "S10", "S01", "S00", "nT", "a_single")


def _cce(dataset: str) -> Protocol:
  from jaxrobust.configs.cifar10_cce import cce_eval_attacks
  cols_t = ("clean", "PGD k100", "BIM k100", "MIM k100", "mul-PGD k20", "mul-BIM k20", "mul-MIM k20", "SPSA",
            "AutoAttack")
  bb_cols = ("B&B(wPGD1)", "B&B(wPGD2)")  # Table 3 (ResNet members) only: no paper values for these tables
  names = ("ADV_1", "ADV-EN_2", "ADP_2", "CCE-RM_2", "ADV-EN_3", "ADP_3", "CCE-RM_3")
  if dataset == "cifar100":
    eps, step = 0.01, 0.001
    table = """40.8 41.4 48.0 53.4 40.8 52.6 54.4|26.8 29.7 30.9 35.3 32.8 36.2 39.5|26.9 29.1 31.0 35.2 32.8 36.2 39.4|
27.0 29.0 30.8 35.3 32.9 36.1 39.6|16.4 15.8 20.1 24.2 16.6 24.8 28.4|15.9 15.5 19.4 23.7 16.3 24.5 28.1|
16.7 16.1 20.3 24.1 16.8 25.1 28.6|25.6 25.5 24.1 31.8 26.0 32.5 35.0|15.3 15.1 14.8 21.9 15.8 23.0 25.9"""
    setting = "Table 5: CIFAR-100, CNN, eps 0.01, eta 0.001"
  else:
    eps, step = 8 / 255, 2 / 255
    table = """75.7 76.0 75.9 76.0 76.7 76.6 75.7|38.0 39.7 42.2 44.7 40.8 43.9 46.8|38.2 39.7 42.2 44.9 40.8 43.8 46.8|
38.5 40.5 42.4 45.4 41.3 44.2 47.2|26.0 27.7 27.8 31.9 28.3 32.4 36.9|25.9 27.2 27.2 31.6 27.7 29.8 34.1|
26.2 28.1 28.3 32.3 29.0 30.7 34.6|40.6 44.3 41.5 45.2 45.1 46.1 47.5|25.1 25.0 24.4 29.9 25.5 28.1 31.9"""
    setting = "Table 4: CIFAR-10, CNN, eps 8/255, eta 2/255"
  by_column = [[float(v) for v in line.split()] for line in table.replace("\n", "").split("|")]
  reference = {row: {c: by_column[j][i] for j, c in enumerate(cols_t)} for i, row in enumerate(names)}
  if dataset == "cifar10":  # Table 6 (N = 2, PGD-20) and Table 7's CCE-DM clean accuracy
    t6 = {"ADV-EN_2": "65.5 24.0 13.0 17.0 46.0 13.3 16.7", "ADP_2": "59.3 25.7 11.7 13.1 49.5 7.6 17.2",
          "CCE-RM_2": "33.7 39.9 5.5 5.2 49.5 5.0 5.6", "CCE-Base_2": "36.1 36.1 7.2 6.5 50.3 6.4 7.2"}
    for row, values in t6.items():
      reference.setdefault(row, {}).update(_row(values, _TRANSFER_COLUMNS))
    reference["CCE-DM_2"] = {"clean": 86.0}
  return Protocol(
      name=f"cce_{dataset}", paper=f"CCE (Bui et al. 2021), {setting}; white-box on the ensemble (log of the mean "
      "probability), SPSA and AutoAttack on 1000 points" + ("; Table 6 transferability" if dataset == "cifar10" else ""),
      dataset=dataset, attacks=tuple(cce_eval_attacks(eps, step)), columns=cols_t + bb_cols + _TRANSFER_COLUMNS,
      reference=reference, rows={"pgd_at": "ADV_1", "adv_en": _cce_row, "adp": _cce_row, "cce": _cce_row},
      transferability="PGD-20", missing=("mul-BIM k20", "mul-MIM k20"),
      notes="Rows are the two-member ones (members=3 rows are in the reference for comparison). The member attacks "
            "(PGD-20 member i) assume 2 members; the transferability columns need an ensemble. mul-BIM / mul-MIM "
            "(multi-targeted with BIM / MIM steps) are not in the library: their columns stay empty.")


def _tamoo_at() -> Protocol:
  cols = ("clean", "PGD-20", "A-All", "A-Avg")
  values = {"MobiX3 PGD-AT": "80.43 32.78 54.34 73.89", "MobiX3 MinMax-AT": "79.01 37.28 50.28 66.77",
            "MobiX3 MOO-AT": "79.38 33.04 46.28 74.36", "MobiX3 TA-MOO-AT": "79.22 38.22 48.21 67.83",
            "RME PGD-AT": "86.52 37.36 49.01 69.75", "RME MinMax-AT": "83.16 40.40 46.91 65.73",
            "RME MOO-AT": "82.04 37.48 45.24 70.11", "RME TA-MOO-AT": "82.59 41.32 43.68 65.09"}

  def row(method: dict) -> str:
    attacker = method.get("attacker", {"tamoo_at": "tamoo", "moo_at": "mgda", "minmax_at": "minmax"}.get(
        method["name"], "pgd"))
    return "MobiX3 " + {"pgd": "PGD-AT", "uniform": "PGD-AT", "minmax": "MinMax-AT", "mgda": "MOO-AT",
                        "tamoo": "TA-MOO-AT"}[attacker]
  return Protocol(
      name="tamoo_at_cifar10", paper="TA-MOO (Bui et al. 2023), Table 4: adversarial training of ensembles, "
      "CIFAR-10, PGD-20 on the ensemble eps 8/255 eta 2/255; A-All / A-Avg = % of its points fooling every / an "
      "average member", dataset="cifar10",
      attacks=({"name": "pgd", "label": "PGD-20", "eps": 8 / 255, "steps": 20, "step_size": 2 / 255},),
      columns=cols, reference=_table(cols, values),
      rows={n: row for n in ("ensemble_at", "tamoo_at", "moo_at", "minmax_at")}, ensemble_success="PGD-20",
      notes="Rows are MobiX3 (3 x MobileNet); the RME rows (ResNet-18 + MobileNet + EfficientNet-B0) are in the "
            "reference for comparison. NAT and ADV are ensemble accuracies; A-All and A-Avg attack success rates "
            "(lower is better).")


_TAMOO_WEIGHTINGS = (("Uniform", "uniform"), ("MinMax", "minmax"), ("MOO", "mgda"), ("TA-MOO", "tamoo"))


def _tamoo_ens() -> Protocol:
  attacks = tuple({"name": "moo_ens", "label": label, "weighting": weighting, "eps": 8 / 255, "step_size": 2 / 255,
                   "steps": 100, "loss": "ce"} for label, weighting in _TAMOO_WEIGHTINGS)
  cols = ("clean",) + tuple(f"{label} {m}" for label, _ in _TAMOO_WEIGHTINGS for m in ("A-All", "A-Avg"))
  no_minmax = tuple(c for c in cols[1:] if not c.startswith("MinMax"))
  reference = {**_table(cols[1:], {"set D (R18, VGG16, GoogLeNet, EffNet-B0)": "28.21 48.34 35.75 51.56 25.16 "
                                                                              "44.76 38.01 51.10"}),
               **_table(no_minmax, {"set ND (4 x R18)": "28.17 48.75 32.50 52.21 41.01 57.33"})}
  return Protocol(
      name="tamoo_ens_cifar10", paper="TA-MOO (Bui et al. 2023), Tables 1-2: attacking an ensemble of 4 separately "
      "trained CIFAR-10 models (ENS), CE loss, eps 8/255, eta 2/255, 100 steps; A-All / A-Avg = % of points fooling "
      "every / an average member (higher is a stronger attack)", dataset="cifar10", attacks=attacks,
      columns=cols, reference=reference, ensemble_success_each=tuple(label for label, _ in _TAMOO_WEIGHTINGS),
      members=4,
      notes="Evaluate the members as one ensemble: jaxrobust evaluate --run-dir R1 --run-dir R2 --run-dir R3 "
            "--run-dir R4 --protocol tamoo_ens_cifar10. MOO is the MGDA weighting (softmax-GD inner solver); set ND's "
            "MinMax is not in the thesis's Table 2. The paper's members are standard (non-robust) models.")


_PROTOCOLS: dict[str, Callable[[], Protocol]] = {
    "mail_cifar10": _mail,
    "spat_cifar10": _spat_cifar10,
    "spat_mnist": _spat_mnist,
    "udr_cifar10": lambda: _udr("cifar10"),
    "udr_mnist": lambda: _udr("mnist"),
    "udr_cifar100": lambda: _udr("cifar100"),
    "adr_cifar10": lambda: _adr("cifar10"),
    "adr_mnist": lambda: _adr("mnist"),
    "ascl_cifar10": lambda: _ascl("cifar10"),
    "ascl_cifar100": lambda: _ascl("cifar100"),
    "adap_cifar10": _adap,
    "cce_cifar10": lambda: _cce("cifar10"),
    "cce_cifar100": lambda: _cce("cifar100"),
    "tamoo_at_cifar10": _tamoo_at,
    "tamoo_ens_cifar10": _tamoo_ens,
}


def protocol_names() -> list[str]:
  return sorted(_PROTOCOLS)


def get_protocol(name: str) -> Protocol:
  """The protocol registered as ``name``; unknown names raise ValueError naming the nearest."""
  return lookup(_PROTOCOLS, name, "protocol")()


def paper_row(protocol: Protocol, method: dict) -> str | None:
  """The paper row a run's method section corresponds to, or None."""
  row = protocol.rows.get(method.get("name", ""))
  return row(method) if callable(row) else row


def check_run_matches(protocol: Protocol, cfg: dict) -> None:
  """A run trained on other data than the protocol's is refused before any attack runs."""
  data = cfg.get("data", {})
  if data.get("name") != protocol.dataset:
    raise ValueError(f"protocol {protocol.name!r} is defined on {protocol.dataset!r}, but the run was trained on "
                     f"{data.get('name')!r}; choose a protocol for {data.get('name')!r} (jaxrobust list --protocols)")
  if protocol.metric == "ap" and not data.get("binary_task"):
    raise ValueError(f"protocol {protocol.name!r} evaluates average precision of a one-vs-all (binary) model; "
                     "the run has no data.binary_task")
