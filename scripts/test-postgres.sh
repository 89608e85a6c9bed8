# Sourced by scripts/test (and usable alone: `source scripts/test-postgres.sh`
# then `start_test_postgres`): a throwaway PostgreSQL cluster for the tests
# that run Herald on PostgreSQL. Installs Debian's `postgresql` package when
# no server is installed and this runs as root; creates the cluster with
# initdb (as the `postgres` user when root) under target/pg-test with its
# socket there, on a free loopback port, with fsync off (a test database
# needs no durability); exports HERALD_TEST_PG (a URL of the cluster's
# `postgres` database, from which each test creates its own) and stops and
# removes the cluster when the calling shell exits.

pg_bin_dir() {
    ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1
}

start_test_postgres() {
    local root="$1" bin dir port run=()
    bin="$(pg_bin_dir)"
    if [[ -z "$bin" ]]; then
        if [[ "$(id -u)" == 0 ]] && command -v apt-get >/dev/null; then
            echo "test: installing PostgreSQL (Debian's postgresql package) for the PostgreSQL tests; once, about a minute" >&2
            { DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends postgresql >/dev/null 2>&1 \
                || { apt-get update >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends postgresql >/dev/null; }; } \
                || echo "test: could not install PostgreSQL" >&2
            bin="$(pg_bin_dir)"
        fi
    fi
    if [[ -z "$bin" ]]; then
        export HERALD_TEST_PG_MISSING="no PostgreSQL server under /usr/lib/postgresql: install it as root with \`apt-get install -y postgresql\`, then run scripts/test again"
        echo "test: $HERALD_TEST_PG_MISSING" >&2
        return 0
    fi
    dir="$root/target/pg-test"
    if [[ -f "$dir/data/postmaster.pid" ]]; then
        "$bin/pg_ctl" -D "$dir/data" -m immediate stop >/dev/null 2>&1 || true
    fi
    rm -rf "$dir"
    mkdir -p "$dir/data" "$dir/socket"
    if [[ "$(id -u)" == 0 ]]; then
        chown -R postgres "$dir"
        run=(runuser -u postgres --)
        # The server runs as `postgres`, which must reach the directory: a
        # checkout under a private home cannot be, so use /tmp then.
        if ! "${run[@]}" test -w "$dir/data"; then
            rm -rf "$dir"
            dir="$(mktemp -d /tmp/herald-pg-test.XXXXXX)"
            mkdir -p "$dir/data" "$dir/socket"
            chown -R postgres "$dir"
        fi
    fi
    port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
    "${run[@]}" "$bin/initdb" -D "$dir/data" -U postgres -A trust -E UTF8 --no-sync >"$dir/initdb.log" 2>&1 || {
        echo "test: initdb failed:" >&2
        cat "$dir/initdb.log" >&2
        return 1
    }
    "${run[@]}" "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
        -o "-p $port -k $dir/socket -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=400" \
        start >/dev/null || {
        echo "test: the PostgreSQL test server did not start:" >&2
        cat "$dir/server.log" >&2
        return 1
    }
    TEST_PG_STOP=("${run[@]}" "$bin/pg_ctl" -D "$dir/data" -m immediate stop)
    TEST_PG_DIR="$dir"
    trap stop_test_postgres EXIT
    export HERALD_TEST_PG="postgres://postgres@127.0.0.1:$port/postgres"
    echo "test: PostgreSQL $("$bin/postgres" --version | awk '{print $3}') for the tests on 127.0.0.1:$port (data in $dir)" >&2
}

stop_test_postgres() {
    if [[ -n "${TEST_PG_DIR:-}" ]]; then
        "${TEST_PG_STOP[@]}" >/dev/null 2>&1 || true
        rm -rf "$TEST_PG_DIR"
        TEST_PG_DIR=""
    fi
}
