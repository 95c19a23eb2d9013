# make soak: the soak (bench/soak.pl; included by Makefile, run by make bench
# after the benchmark against nchan)
#
#   make soak                       30 minutes of load, then the verdict
#   make soak SOAK_MINUTES=5        a shorter run
#   make soak SOAK_ARGS='--rate 100 -v'   soak.pl's other options
#
# One nginx (2 workers, sse_zone 32m) under publishers, resuming and churning
# subscribers and a reload every minute; it prints the curve of the zone's
# used bytes, kept events, subscribers and the workers' RSS, and fails when
# the end differs from the start by more than 5% or a resuming subscriber
# lost, doubled or reordered an event (the rules: bench/soak.pl's header).
# Results also go to build/soak/.

SOAK_MINUTES ?= 30
SOAK_ARGS    ?=

.PHONY: soak

soak: deps build
	perl bench/soak.pl --minutes $(SOAK_MINUTES) $(SOAK_ARGS)
