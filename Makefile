.PHONY: run test bench bench-accounts bench-instructions bench-page bench-card bench-sync
run:
	scripts/run.sh
test:
	scripts/test.sh
bench:
	scripts/bench.sh
bench-accounts:
	scripts/bench-accounts.sh
bench-instructions:
	scripts/bench-instructions.sh

bench-page:
	scripts/bench-page.sh

bench-card:
	scripts/bench-card.sh

bench-sync:
	scripts/bench-sync.sh
