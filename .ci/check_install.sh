#!/usr/bin/env bash
# The distribution as a user gets it: build and install it NON-editable into a scratch folder, check that only the
# rlo package (every file of it) landed there, that it declares torch as its one dependency, and run it from a
# folder outside the checkout.
#
#   .ci/check_install.sh        (no network: --no-deps --no-build-isolation --no-index; needs setuptools >= 68)
#
# The build reads a copy of the checkout's files (tracked and untracked-but-not-ignored), so a stale build/ or
# *.egg-info here can neither leak into the check nor be written by it. The runs use `python3 -S` with the
# interpreter's site-packages on PYTHONPATH: .pth files are skipped, so an editable install of some checkout cannot
# serve a module that the installed copy lacks.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
start=$SECONDS
fail() { echo "check_install: FAIL: $*" >&2; exit 1; }
step() { echo "check_install: [$((SECONDS - start)) s] $*"; }

step "copying the checkout's files to $tmp/src"
mkdir "$tmp/src"
(cd "$repo" && git ls-files -z --cached --others --exclude-standard | while IFS= read -r -d '' f; do
    [[ -e "$f" ]] && printf '%s\0' "$f"; done | tar --null -T - -cf -) | tar -C "$tmp/src" -xf -

step "pip install --no-deps --target $tmp/site (non-editable)"
python3 -m pip install --quiet --no-deps --no-build-isolation --no-index --no-cache-dir \
    --disable-pip-version-check --root-user-action=ignore --target "$tmp/site" "$tmp/src" \
    || fail "building or installing the distribution failed (see pip's output)"

step "only rlo and its dist-info were installed"
unexpected="$(cd "$tmp/site" && ls -A | grep -vxE 'rlo|rlo_stylegan2-[^/]+\.dist-info' || true)"
[[ -z "$unexpected" ]] || fail "installed besides rlo: $(echo $unexpected)"
[[ -f "$tmp/site/rlo/__init__.py" ]] || fail "rlo/__init__.py was not installed"

step "every file of rlo/ in the checkout was installed (modules and package data), and nothing else"
diff <(cd "$tmp/src" && find rlo -type f ! -path '*/__pycache__/*' | sort) \
     <(cd "$tmp/site" && find rlo -type f ! -path '*/__pycache__/*' | sort) \
    || fail "installed rlo/ differs from the checkout's rlo/ (< checkout only, > installed only)"

step "the distribution depends on torch and nothing else"
requires="$(cat "$tmp"/site/rlo_stylegan2-*.dist-info/METADATA | sed -n 's/^Requires-Dist: //p')"
[[ "$requires" == torch* && "$(echo "$requires" | wc -l)" -eq 1 ]] || fail "Requires-Dist is not torch alone: $requires"

# Runs from a folder outside the checkout.
mkdir -p "$tmp/work/run"
cd "$tmp/work/run"
sitedirs="$(python3 -c 'import site, sys; print(":".join(p for p in sys.path if p.endswith("-packages")))')"
run() { env PYTHONPATH="$tmp/site:$sitedirs" PYTHONDONTWRITEBYTECODE=1 OMP_NUM_THREADS=1 python3 -S "$@"; }

step "import rlo and every rlo module from the install: it loads torch and nothing else, and trains a step"
run - "$tmp/site" <<'EOF2' || fail "importing or using the installed rlo failed"
import importlib, pathlib, pkgutil, sys
site = pathlib.Path(sys.argv[1]).resolve()
import torch
before = {n.split(".")[0] for n in sys.modules}
import rlo
names = [m.name for m in pkgutil.walk_packages(rlo.__path__, "rlo.")]
for name in names:
    importlib.import_module(name)
outside = [n for n, m in sys.modules.items() if n.split(".")[0] == "rlo"
           and not pathlib.Path(m.__file__).resolve().is_relative_to(site)]
assert not outside, f"rlo modules not from the install: {outside}"
extra = sorted({n.split(".")[0] for n in sys.modules} - before - {"rlo"})
assert not extra, f"importing rlo loaded more than torch: {extra}"
model = torch.nn.Linear(4, 3)
loss = rlo.RootedLoss(k=3)(model(torch.randn(8, 4)), torch.randint(0, 3, (8,)))
loss.backward()
assert torch.isfinite(loss) and model.weight.grad is not None
print(f"  {len(names) + 1} modules, all from {site}; a RootedLoss step: {loss.item():.4f}")
EOF2

echo "check_install: OK in $((SECONDS - start)) s"
