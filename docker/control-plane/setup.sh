#!/bin/sh
# One-shot setup of the compose demo's control plane: creates (or upgrades)
# the schema with `silo control-plane init`, then inserts the demo catalog:
# two backends, the plans' demo limits, three tenants whose database
# passwords are encrypted under SILO_SECRET_KEY, and user `app` of each.
#
# Run by the control-plane-setup service of docker/docker-compose.yml, with
#   SILO_CONTROL_PLANE_URL  mysql://user:password@host:port/database
#   SILO_SECRET_KEY         the key silo decrypts the passwords with
#   CP_HOST, CP_USER, CP_DATABASE, MYSQL_PWD   the same database, for the client
#
# Running it again changes nothing: rows that exist are left as they are
# (an operator's later changes survive a `docker compose up`).
set -eu

silo control-plane init

# Keep in sync with docker/init/*.sql (databases, users, passwords).
encrypt() {
    printf '%s' "$1" | silo secret encrypt
}
ACME=$(encrypt acme-db-secret)
GLOBEX=$(encrypt globex-db-secret)
INITECH=$(encrypt initech-db-secret)

mariadb --host="$CP_HOST" --user="$CP_USER" --database="$CP_DATABASE" \
    --connect-timeout=10 <<SQL
INSERT IGNORE INTO backends
    (id, host, port, max_connections, connect_timeout_ms, idle_timeout_ms)
VALUES
    (1, 'mariadb1', 3306, 64, 2000, 300000),
    (2, 'mariadb2', 3306, 64, 2000, 300000);

-- The demo's limits, as in config/demo.toml (the README's examples use
-- them: acme on starter, 20 clients, 4 statements at once), set once,
-- before the demo tenants exist. NULL is unlimited.
UPDATE subscription_plans SET weight = 1, max_client_connections = 10,
    max_backend_leases = 2, queue_timeout_ms = 2000,
    max_queries_per_second = 50, burst = 100, max_query_time_ms = 5000,
    max_queries_per_day = 10000
  WHERE plan_name = 'free' AND NOT EXISTS (SELECT 1 FROM tenants WHERE tenant_slug = 'acme');
UPDATE subscription_plans SET weight = 2, max_client_connections = 20,
    max_backend_leases = 4, queue_timeout_ms = 3000,
    max_queries_per_second = 200, burst = 400, max_query_time_ms = 10000,
    max_queries_per_day = 100000
  WHERE plan_name = 'starter' AND NOT EXISTS (SELECT 1 FROM tenants WHERE tenant_slug = 'acme');
UPDATE subscription_plans SET weight = 4, max_client_connections = 200,
    max_backend_leases = 16, queue_timeout_ms = 5000,
    max_queries_per_second = 1000, burst = 2000, max_query_time_ms = 30000,
    max_queries_per_day = 2000000
  WHERE plan_name = 'professional' AND NOT EXISTS (SELECT 1 FROM tenants WHERE tenant_slug = 'acme');
UPDATE subscription_plans SET weight = 8, max_client_connections = 1000,
    max_backend_leases = 48, queue_timeout_ms = 10000,
    max_queries_per_second = NULL, burst = 10000, max_query_time_ms = 120000,
    max_queries_per_day = NULL
  WHERE plan_name = 'enterprise' AND NOT EXISTS (SELECT 1 FROM tenants WHERE tenant_slug = 'acme');

-- initech is suspended: its database exists on backend 1, but silo
-- refuses its logins until an operator reactivates it.
INSERT IGNORE INTO tenants
    (tenant_slug, company_name, subscription_plan, billing_email, status,
     backend_id, db_name, db_user, db_password_encrypted)
VALUES
    ('acme', 'Acme Corporation', 'starter', 'billing@acme.example', 'active',
     1, 'tenant_acme', 'acme_rw', UNHEX('$ACME')),
    ('globex', 'Globex Corporation', 'enterprise', 'billing@globex.example', 'active',
     2, 'tenant_globex', 'globex_rw', UNHEX('$GLOBEX')),
    ('initech', 'Initech', 'free', 'billing@initech.example', 'suspended',
     1, 'tenant_initech', 'initech_rw', UNHEX('$INITECH'));

INSERT IGNORE INTO tenant_users (tenant_id, username, password_hash)
SELECT tenant_id, 'app', PASSWORD('app-pass')
  FROM tenants WHERE tenant_slug IN ('acme', 'globex', 'initech');
SQL

echo "control plane ready: backends 1-2, tenants acme, globex, initech (suspended)"
