# Trireme build and test entry points. `make test` is the command CI runs.
GO ?= go

.PHONY: test build vet fuzz sim-long

build:
	$(GO) build -o bin/trireme ./cmd/trireme

vet:
	$(GO) vet ./...

# The full default suite: unit, scenario, simulator (300+ seeds), node and system
# tests, then the proof that the simulator catches each deliberately broken protocol.
# -count=1: the system, chaos and bench tests build and run the trireme binary
# themselves, which Go's test cache does not see, so a cached pass could hide a
# change to the code they run.
test: vet
	$(GO) test -count=1 -timeout 30m ./...
	$(GO) test -count=1 -timeout 15m -tags replbugs -run 'TestBugsAreCaught' ./internal/sim
	$(GO) test -count=1 -timeout 10m -tags mlbugs -run 'TestMultiLeaderBugsAreCaught' ./internal/multileader/mlsim
	$(GO) test -count=1 -timeout 10m -tags llbugs -run 'TestLeaderlessBugsAreCaught' ./internal/leaderless/llsim
	cd bench && $(GO) test -count=1 -timeout 10m ./...

# A fuzzing pass over every fuzz target in the repository (each decoder a client,
# a peer or a disk can reach), FUZZTIME each (CI runs it with FUZZTIME=3s).
# Targets are found by name, so a new Fuzz function is fuzzed without editing
# this file. A failure leaves its input under the package's testdata/fuzz.
# A failed target runs once more: an input that broke the code is saved and
# fails the rerun first (go test runs testdata/fuzz before fuzzing), while
# the fuzzing engine's own hiccups on a loaded machine ("context deadline
# exceeded" with no input saved, seen in CI) pass.
FUZZTIME ?= 20s
fuzz:
	@set -e; for f in $$(grep -rl --include='*_test.go' '^func Fuzz' internal | sort); do \
		pkg=./$$(dirname $$f); \
		for t in $$(grep -o '^func Fuzz[A-Za-z0-9_]*' $$f | cut -c6-); do \
			echo "== fuzz $$pkg $$t ($(FUZZTIME))"; \
			$(GO) test -run '^$$' -fuzz "^$$t$$" -fuzztime $(FUZZTIME) $$pkg || \
			{ echo "== fuzz $$pkg $$t failed; running it again"; \
			  $(GO) test -run '^$$' -fuzz "^$$t$$" -fuzztime $(FUZZTIME) $$pkg; }; \
		done; \
	done

# Many more simulator seeds (set SEEDS, START, and STEPS for the length of
# each seed's fault phase: 1000 ticks by default, 6000 finds long catch-ups).
SEEDS ?= 10000
START ?= 1
STEPS ?= 0
sim-long:
	$(GO) test -count=1 -timeout 0 -run 'TestSimulation$$' ./internal/sim -sim.seeds=$(SEEDS) -sim.start=$(START) -sim.steps=$(STEPS)
