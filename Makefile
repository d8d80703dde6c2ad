# OneMember developer commands. `make run` and `make test` are the two a
# newcomer needs; both start a local PostgreSQL when DATABASE_URL is unset.
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
PG := scripts/ensure-postgres.sh
WITH_DB = db_url="$$($(PG))" && export "$$db_url" &&

.PHONY: run build test generate check-generated migration check-migrations vet bench pg-stop

## run: start PostgreSQL if needed, load demo data, serve on LISTEN_ADDR (:8080)
run: build
	$(WITH_DB) ./bin/server seed && exec ./bin/server serve

build:
	go build -o bin/server .

## test: generated code and migrations up to date, go vet, go test -race
test:
	$(WITH_DB) $(MAKE) --no-print-directory check-generated check-migrations vet && go test -race -count=1 -timeout 20m ./...

generate:
	go generate ./...

# Regenerates everything and fails if that changed or added any file.
check-generated: generate
	@changes=$$(git status --porcelain -- ent graph go.mod go.sum); \
	if [ -n "$$changes" ]; then echo "go generate changed files (commit the regenerated code):"; echo "$$changes"; git --no-pager diff --stat; exit 1; fi

## migration name=<change>: write a migration for ent schema changes
migration:
	$(WITH_DB) go run . migrate diff $(name)

check-migrations:
	go run . migrate check

vet:
	go vet ./...

## bench: load benchmarks against pgbench on this machine (docs/BENCHMARKS.md)
bench: build
	$(WITH_DB) scripts/bench.sh
	$(WITH_DB) scripts/bench-realtime.sh
	$(WITH_DB) scripts/bench-datacenter.sh
	$(WITH_DB) scripts/bench-campaign.sh

pg-stop:
	$(PG) stop
