# test_store_postgresql: the same test_store binary as test_store, run
# against a throwaway PostgreSQL server (lib-postgres.sh) through the
# module store-postgresql: every test of the store runs on both backends.
#   store_postgresql.sh TEST_STORE_BINARY
set -uo pipefail
. "$(dirname "$0")/lib-postgres.sh"
pg_start
CHAT_TEST_STORE=$PG_URL CHAT_TEST_PG_BIN=$PG_BIN "$1"
