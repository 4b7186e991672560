.PHONY: run test bench bench-page
run:
	scripts/run.sh
test:
	scripts/test.sh
bench:
	scripts/bench.sh

bench-page:
	scripts/bench-page.sh
