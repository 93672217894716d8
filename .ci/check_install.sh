#!/usr/bin/env bash
# The distribution as a user gets it: build and install it NON-editable into a scratch folder, check that only the
# rlo package (every file of it) landed there, and run it from a folder outside the checkout.
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

# Runs from a folder outside the checkout; its ../shared does not exist, and no data folder is configured.
mkdir -p "$tmp/work/run"
cd "$tmp/work/run"
sitedirs="$(python3 -c 'import site, sys; print(":".join(p for p in sys.path if p.endswith("-packages")))')"
run() { env -u RLO_UCI_DIR -u RLO_SHARED_DIR PYTHONPATH="$tmp/site:$sitedirs" PYTHONDONTWRITEBYTECODE=1 \
        OMP_NUM_THREADS=1 python3 -S "$@"; }

step "import rlo and every rlo module from the install; rlo imports nothing of the GAN code"
run - "$tmp/site" <<'EOF' || fail "importing the installed rlo failed"
import importlib, pathlib, pkgutil, sys
site = pathlib.Path(sys.argv[1]).resolve()
import rlo
rlo.RootedLoss(k=3)
names = [m.name for m in pkgutil.walk_packages(rlo.__path__, "rlo.")]
for name in names:
    importlib.import_module(name)
outside = [n for n, m in sys.modules.items() if n.split(".")[0] == "rlo"
           and not pathlib.Path(m.__file__).resolve().is_relative_to(site)]
assert not outside, f"rlo modules not from the install: {outside}"
ours = sorted({n.split(".")[0] for n in sys.modules} & {"training", "metrics", "dnnlib", "torch_utils"})
assert not ours, f"importing rlo imported {ours}"
print(f"  {len(names) + 1} modules, all from {site}")
EOF

step "logreg --out DIR --datasets wine --steps 5"
run -m rlo.experiments.logreg --out "$tmp/out" --datasets wine --steps 5 > "$tmp/logreg.log" \
    || fail "logreg run failed: $(tail -3 "$tmp/logreg.log")"
for f in logreg_table1.md logreg_table1.csv logreg_convergence.png; do
    [[ -s "$tmp/out/$f" ]] || fail "logreg did not write $tmp/out/$f"
done
grep -q '| Wine |' "$tmp/out/logreg_table1.md" || fail "logreg_table1.md has no Wine row"

step "the default --out is ./rlo-results under the working directory, not the install"
run -m rlo.experiments.logreg --datasets wine --steps 1 > "$tmp/logreg_default.log" \
    || fail "logreg run with the default --out failed: $(tail -3 "$tmp/logreg_default.log")"
for f in logreg_table1.md logreg_table1.csv logreg_convergence.png; do
    [[ -s "rlo-results/$f" ]] || fail "default --out: $PWD/rlo-results/$f missing"
done
leaked="$(cd "$tmp/site" && find . -type f ! -path '*/__pycache__/*' | grep -E '\.(md|csv|png)$' || true)"
[[ -z "$leaked" ]] || fail "outputs written into the install: $leaked"

step "a UCI set with no data folder: exit 2, and the error names the folder searched beside the working directory"
set +e
run -m rlo.experiments.logreg --datasets ionosphere --out "$tmp/out_missing" 2> "$tmp/missing.err" > /dev/null
code=$?
set -e
error="$(tail -1 "$tmp/missing.err")"
[[ $code -eq 2 ]] || fail "expected exit 2 for missing ionosphere.data, got $code: $error"
[[ "$error" == *"ionosphere.data"* && "$error" == *"$tmp/work/shared/data/uci"* ]] \
    || fail "the error does not name ionosphere.data and $tmp/work/shared/data/uci: $error"
[[ "$error" != *"$tmp/site"* ]] || fail "the data search looked into the install: $error"

uci_dir="${RLO_SHARED_DIR:-$repo/../shared}/data/uci"
if [[ -f "$uci_dir/ionosphere.data" ]]; then
    step "logreg --data-dir $uci_dir --datasets ionosphere (a file-backed loader from the install)"
    run -m rlo.experiments.logreg --data-dir "$uci_dir" --out "$tmp/out_uci" --datasets ionosphere --steps 5 \
        > "$tmp/uci.log" || fail "logreg on ionosphere failed: $(tail -3 "$tmp/uci.log")"
    grep -q '| Ionosphere |' "$tmp/out_uci/logreg_table1.md" || fail "logreg_table1.md has no Ionosphere row"
else
    step "skipped the ionosphere run: no $uci_dir/ionosphere.data (set RLO_SHARED_DIR)"
fi

echo "check_install: OK in $((SECONDS - start)) s"
