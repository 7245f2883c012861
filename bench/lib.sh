# Shared by the bench scripts (sourced): a work directory whose processes are stopped on exit,
# free ports, waiting for a listener, the nginx upstream stand-in (answers 201 with a small JSON
# body to anything, serves WORK/jwks.json as the demo realm's JWKS, keeps connections for ten
# million requests), the wrk script that POSTs registrations, and the HAProxy configuration every
# comparison uses.

# bench_work PREFIX: sets WORK (a fresh directory) and PIDS (started processes); on exit the
# processes are stopped and WORK removed.
bench_work() {
    WORK=$(mktemp -d "/tmp/$1.XXXXXX")
    PIDS=()
    trap bench_cleanup EXIT
}

stop() {
    local pid
    for pid in "$@"; do
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
}

bench_cleanup() {
    stop "${PIDS[@]}"
    rm -rf "$WORK"
}

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

wait_port() {
    local i
    for i in $(seq 1 600); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.05
    done
    echo "nothing listens on $1" >&2
    return 1
}

# nginx_upstream WORK PORT: writes WORK/nginx.conf and starts nginx on core 0 (pid in NGINX_PID).
nginx_upstream() {
    local work=$1 port=$2
    mkdir -p "$work/nginx"
    cat >"$work/nginx.conf" <<CONF
daemon off;
master_process off;
worker_processes 1;
pid $work/nginx.pid;
error_log $work/nginx-error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path $work/nginx/body;
    proxy_temp_path $work/nginx/proxy;
    fastcgi_temp_path $work/nginx/fastcgi;
    uwsgi_temp_path $work/nginx/uwsgi;
    scgi_temp_path $work/nginx/scgi;
    keepalive_requests 10000000;
    server {
        listen 127.0.0.1:$port;
        location = /realms/demo/protocol/openid-connect/certs {
            default_type application/json;
            alias $work/jwks.json;
        }
        location / {
            default_type application/json;
            return 201 '{"client_id":"bench"}';
        }
    }
}
CONF
    taskset -c 0 nginx -p "$work/nginx" -c "$work/nginx.conf" &
    NGINX_PID=$!
    wait_port "$port"
}

# wrk_tokens_script FILE: writes the wrk script that POSTs registrations, cycling through
# pre-formatted requests, one per token. Its arguments: path, body file, token file.
wrk_tokens_script() {
    cat >"$1" <<'EOF'
local reqs, n, i = {}, 0, 0
function init(args)
    local body = io.open(args[2]):read("*a")
    for line in io.lines(args[3]) do
        n = n + 1
        reqs[n] = wrk.format("POST", args[1], {
            ["Authorization"] = "Bearer " .. line,
            ["Content-Type"] = "application/json",
        }, body)
    end
end
function request()
    i = i % n + 1
    return reqs[i]
end
EOF
}

# haproxy_head THREADS PORT: HAProxy's global and defaults sections and the frontend's first
# lines (keep-alive both ways, `http-reuse always`); rules and haproxy_tail follow.
haproxy_head() {
    cat <<CONF
global
    nbthread $1
    maxconn 4096
defaults
    mode http
    timeout connect 5s
    timeout client 30s
    timeout server 30s
    option http-keep-alive
    http-reuse always
frontend fe
    bind 127.0.0.1:$2
CONF
}

# haproxy_tail NGINX_PORT: the backend, the nginx stand-in.
haproxy_tail() {
    cat <<CONF
    default_backend up
backend up
    server nginx 127.0.0.1:$1
CONF
}
