# Two entry points: `make demo` (EgoToy pre-training + 5-way 5-shot episodic test) and `make test`.
# Both create .venv and install ego_fsar into it when missing.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
EGOTOY ?= data/egotoy
DEMO_OUT ?= output/demo

.PHONY: demo test setup clean-demo

setup: $(VENV)/.installed

$(VENV)/.installed: requirements.txt requirements-test.txt setup.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements-test.txt
	$(PY) -m pip install -q --no-deps -e .
	touch $@

# Rebuilt (replacing the old copy) when missing, incomplete or older than its generator.
$(EGOTOY)/.complete: $(VENV)/.installed tools/make_egotoy.py ego_fsar/datasets/egotoy_render.py \
		ego_fsar/datasets/egotoy_writer.py
	$(PY) tools/make_egotoy.py --out $(EGOTOY) --seed 0 --overwrite
	touch $@

demo: $(VENV)/.installed $(EGOTOY)/.complete
	$(PY) tools/run_net.py --cfg configs/EgoToy/SLOWFAST_DEMO.yaml OUTPUT_DIR $(DEMO_OUT)/pretrained
	$(PY) tools/run_net.py --cfg configs/EgoToy/SLOWFAST_DEMO.yaml OUTPUT_DIR $(DEMO_OUT)/random_init \
		TRAIN.ENABLE False
	@echo "EgoToy 5-way 5-shot, pre-trained backbone vs random initialisation:"
	@for run in pretrained random_init; do \
		printf '%-12s ' $$run; grep -h '"_type": "fewshot_test"' $(DEMO_OUT)/$$run/json_stats.log | tail -n 1; \
	done

test: $(VENV)/.installed
	$(PY) -m pytest tests -q -p no:cacheprovider

clean-demo:
	rm -rf $(DEMO_OUT)
