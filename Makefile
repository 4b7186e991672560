.PHONY: run test bench bench-instructions bench-page
run:
	scripts/run.sh
test:
	scripts/test.sh
bench:
	scripts/bench.sh
bench-instructions:
	scripts/bench-instructions.sh

bench-page:
	scripts/bench-page.sh
