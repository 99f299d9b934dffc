# The two commands of the README, and the checks CI runs.
.PHONY: demo test lint docs-map services-up services-down bench clean

demo:            ## the whole pipeline live on local services (Ctrl-C stops it)
	scripts/demo.sh $(ARGS)

test:            ## the whole test suite, integration tests on real Kafka and Redis included
	scripts/test.sh $(ARGS)

lint:            ## ruff, mypy --strict and the import-linter layering contracts
	scripts/bootstrap.sh dev
	.venv/bin/ruff check streams online_models alerts tests bench
	.venv/bin/mypy
	.venv/bin/lint-imports

docs-map:        ## redraw docs/architecture.{md,svg} from the code
	scripts/bootstrap.sh dev
	.venv/bin/python scripts/architecture.py

services-up:
	scripts/bootstrap.sh
	.venv/bin/churnpulse services up

services-down:
	.venv/bin/churnpulse services down

bench:           ## end-to-end benchmark on local services it brings up (prints figures; not pass/fail)
	scripts/bootstrap.sh test,parquet,bench
	scripts/with-services.sh .venv/bin/python bench/bench_pipeline.py $(ARGS)

clean:
	rm -rf .venv .churnpulse .pytest_cache .mypy_cache .ruff_cache
