-- silo control plane, schema version 1.
--
-- The catalog silo routes by: backends, subscription_plans, tenants and
-- tenant_users. Every change to those four tables bumps the single row of
-- silo_catalog_version (through the triggers at the end), so silo polls one
-- primary-key read and reloads only when it moved. tenant_events and
-- tenant_usage_metrics are history and counters: they do not bump it.
--
-- Applied by `silo control-plane init`, which records it in
-- silo_schema_migrations. Every statement is idempotent, so a run that was
-- interrupted half-way can simply be run again.

-- MariaDB servers silo relays to.
CREATE TABLE IF NOT EXISTS backends (
    id INT UNSIGNED PRIMARY KEY,
    host VARCHAR(255) NOT NULL,
    port SMALLINT UNSIGNED NOT NULL DEFAULT 3306,
    -- Cap on connections silo opens to this server, all tenants together.
    max_connections INT UNSIGNED NOT NULL,
    connect_timeout_ms INT UNSIGNED NOT NULL DEFAULT 2000,
    idle_timeout_ms INT UNSIGNED NOT NULL DEFAULT 300000,
    -- Out of rotation: no new leases; sessions pinned to it finish there.
    draining BOOLEAN NOT NULL DEFAULT FALSE,
    created_at DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
    updated_at DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6)
               ON UPDATE CURRENT_TIMESTAMP(6)
) ENGINE=InnoDB;

-- Plans: the seeds' commercial columns, then the limits silo enforces.
-- A NULL limit is unlimited.
CREATE TABLE IF NOT EXISTS subscription_plans (
    plan_id VARCHAR(36) PRIMARY KEY DEFAULT (UUID()),
    plan_name VARCHAR(50) UNIQUE NOT NULL,
    display_name VARCHAR(100) NOT NULL,
    max_users INT UNSIGNED,
    max_storage_gb INT UNSIGNED,
    max_api_calls_per_day INT UNSIGNED,
    features JSON NOT NULL DEFAULT '{}',
    monthly_price_cents INT UNSIGNED NOT NULL DEFAULT 0,
    annual_price_cents INT UNSIGNED,
    is_active BOOLEAN DEFAULT TRUE,
    -- Share of a saturated backend relative to other plans.
    weight INT UNSIGNED NOT NULL DEFAULT 1,
    max_client_connections INT UNSIGNED,
    max_backend_leases INT UNSIGNED,
    -- How long a command may wait for a lease slot or a rate token.
    queue_timeout_ms INT UNSIGNED NOT NULL DEFAULT 5000,
    max_queries_per_second INT UNSIGNED,
    burst INT UNSIGNED,
    max_query_time_ms INT UNSIGNED,
    max_queries_per_day BIGINT UNSIGNED,
    -- NULL: the [pool] mode of silo's configuration file.
    pool_mode ENUM('session', 'transaction'),
    created_at DATETIME(6) DEFAULT CURRENT_TIMESTAMP(6),
    updated_at DATETIME(6) DEFAULT CURRENT_TIMESTAMP(6)
               ON UPDATE CURRENT_TIMESTAMP(6)
) ENGINE=InnoDB;

INSERT IGNORE INTO subscription_plans
    (plan_name, display_name, max_users, max_storage_gb, max_api_calls_per_day,
     features, monthly_price_cents,
     weight, max_client_connections, max_backend_leases, queue_timeout_ms,
     max_queries_per_second, burst, max_query_time_ms, max_queries_per_day)
VALUES
    ('free', 'Free', 5, 1, 1000,
     '{"api_access": false, "custom_domain": false, "sso": false, "support": "community"}', 0,
     1, 10, 2, 2000, 20, 40, 10000, 100000),
    ('starter', 'Starter', 25, 10, 10000,
     '{"api_access": true, "custom_domain": false, "sso": false, "support": "email"}', 2900,
     2, 50, 5, 5000, 100, 200, 30000, 1000000),
    ('professional', 'Professional', 100, 50, 100000,
     '{"api_access": true, "custom_domain": true, "sso": false, "support": "priority"}', 9900,
     4, 200, 20, 5000, 1000, 2000, 60000, NULL),
    ('enterprise', 'Enterprise', NULL, NULL, NULL,
     '{"api_access": true, "custom_domain": true, "sso": true, "support": "dedicated"}', 29900,
     8, NULL, NULL, 10000, NULL, NULL, NULL, NULL);

CREATE TABLE IF NOT EXISTS tenants (
    tenant_id VARCHAR(36) PRIMARY KEY DEFAULT (UUID()),
    -- URL-safe identifier; what clients name (app.<slug>, SNI, attribute).
    tenant_slug VARCHAR(64) UNIQUE NOT NULL,
    company_name VARCHAR(255) NOT NULL,
    subscription_plan VARCHAR(50) NOT NULL DEFAULT 'free',
    billing_email VARCHAR(255) NOT NULL DEFAULT '',
    -- 'deleted' rows are kept for history and never routed.
    status ENUM('provisioning', 'active', 'suspended', 'paused',
                'pending_deletion', 'deleted') NOT NULL DEFAULT 'provisioning',
    backend_id INT UNSIGNED NOT NULL,
    db_name VARCHAR(64) NOT NULL,
    db_user VARCHAR(80) NOT NULL,
    -- AES-256-GCM, see `silo secret encrypt`; NULL only while provisioning.
    db_password_encrypted VARBINARY(512),
    max_users INT UNSIGNED,
    max_storage_gb INT UNSIGNED,
    max_api_calls_per_day INT UNSIGNED,
    -- This tenant's exceptions to its plan's limits, e.g.
    -- {"max_client_connections": 30, "burst": "unlimited"}.
    limit_overrides JSON,
    -- NULL: the plan's, else silo's [pool] mode.
    pool_mode ENUM('session', 'transaction'),
    custom_domain VARCHAR(255),
    settings JSON,
    features_enabled JSON,
    created_at DATETIME(6) DEFAULT CURRENT_TIMESTAMP(6),
    updated_at DATETIME(6) DEFAULT CURRENT_TIMESTAMP(6)
               ON UPDATE CURRENT_TIMESTAMP(6),
    deleted_at DATETIME(6),
    INDEX idx_status (status),
    INDEX idx_plan (subscription_plan),
    INDEX idx_backend (backend_id),
    INDEX idx_custom_domain (custom_domain),
    CONSTRAINT fk_tenants_plan FOREIGN KEY (subscription_plan)
        REFERENCES subscription_plans (plan_name) ON UPDATE CASCADE,
    CONSTRAINT fk_tenants_backend FOREIGN KEY (backend_id)
        REFERENCES backends (id)
) ENGINE=InnoDB;

-- Who may log in through silo for a tenant.
CREATE TABLE IF NOT EXISTS tenant_users (
    id BIGINT UNSIGNED AUTO_INCREMENT PRIMARY KEY,
    tenant_id VARCHAR(36) NOT NULL,
    username VARCHAR(80) NOT NULL,
    -- MariaDB PASSWORD() form: '*' and 40 hex digits of SHA1(SHA1(password)).
    password_hash VARCHAR(41) NOT NULL,
    created_at DATETIME(6) DEFAULT CURRENT_TIMESTAMP(6),
    updated_at DATETIME(6) DEFAULT CURRENT_TIMESTAMP(6)
               ON UPDATE CURRENT_TIMESTAMP(6),
    UNIQUE KEY uk_tenant_user (tenant_id, username),
    INDEX idx_username (username),
    CONSTRAINT fk_users_tenant FOREIGN KEY (tenant_id)
        REFERENCES tenants (tenant_id) ON DELETE CASCADE
) ENGINE=InnoDB;

-- Every change to a tenant (and to a backend: tenant_id NULL). No foreign
-- key: the history outlives the rows it speaks of.
CREATE TABLE IF NOT EXISTS tenant_events (
    event_id BIGINT UNSIGNED AUTO_INCREMENT PRIMARY KEY,
    tenant_id VARCHAR(36),
    -- The seeds' vocabulary ('created', 'suspended', 'reactivated', ...) and
    -- silo's ('plan_changed', 'backend_changed', 'paused', ...).
    event_type VARCHAR(64) NOT NULL,
    event_data JSON,
    performed_by VARCHAR(255),
    reason VARCHAR(1024),
    created_at DATETIME(6) DEFAULT CURRENT_TIMESTAMP(6),
    INDEX idx_tenant (tenant_id, event_id),
    INDEX idx_type (event_type),
    INDEX idx_created (created_at)
) ENGINE=InnoDB;

-- Daily counters per tenant. silo adds its query counts here; with several
-- silo instances the row is their sum.
CREATE TABLE IF NOT EXISTS tenant_usage_metrics (
    metric_id BIGINT UNSIGNED AUTO_INCREMENT PRIMARY KEY,
    tenant_id VARCHAR(36) NOT NULL,
    -- UTC day.
    metric_date DATE NOT NULL,
    user_count INT UNSIGNED DEFAULT 0,
    storage_bytes BIGINT UNSIGNED DEFAULT 0,
    api_calls_count INT UNSIGNED DEFAULT 0,
    query_count BIGINT UNSIGNED DEFAULT 0,
    created_at DATETIME(6) DEFAULT CURRENT_TIMESTAMP(6),
    updated_at DATETIME(6) DEFAULT CURRENT_TIMESTAMP(6)
               ON UPDATE CURRENT_TIMESTAMP(6),
    UNIQUE KEY uk_tenant_date (tenant_id, metric_date),
    INDEX idx_date (metric_date)
) ENGINE=InnoDB;

-- One row: the catalog's version, bumped by every change to it.
CREATE TABLE IF NOT EXISTS silo_catalog_version (
    id TINYINT UNSIGNED PRIMARY KEY,
    version BIGINT UNSIGNED NOT NULL,
    updated_at DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6)
               ON UPDATE CURRENT_TIMESTAMP(6),
    CONSTRAINT one_row CHECK (id = 1)
) ENGINE=InnoDB;

INSERT IGNORE INTO silo_catalog_version (id, version) VALUES (1, 1);

CREATE TRIGGER IF NOT EXISTS silo_backends_ai AFTER INSERT ON backends FOR EACH ROW
    UPDATE silo_catalog_version SET version = version + 1 WHERE id = 1;
CREATE TRIGGER IF NOT EXISTS silo_backends_au AFTER UPDATE ON backends FOR EACH ROW
    UPDATE silo_catalog_version SET version = version + 1 WHERE id = 1;
CREATE TRIGGER IF NOT EXISTS silo_backends_ad AFTER DELETE ON backends FOR EACH ROW
    UPDATE silo_catalog_version SET version = version + 1 WHERE id = 1;

CREATE TRIGGER IF NOT EXISTS silo_plans_ai AFTER INSERT ON subscription_plans FOR EACH ROW
    UPDATE silo_catalog_version SET version = version + 1 WHERE id = 1;
CREATE TRIGGER IF NOT EXISTS silo_plans_au AFTER UPDATE ON subscription_plans FOR EACH ROW
    UPDATE silo_catalog_version SET version = version + 1 WHERE id = 1;
CREATE TRIGGER IF NOT EXISTS silo_plans_ad AFTER DELETE ON subscription_plans FOR EACH ROW
    UPDATE silo_catalog_version SET version = version + 1 WHERE id = 1;

CREATE TRIGGER IF NOT EXISTS silo_tenants_ai AFTER INSERT ON tenants FOR EACH ROW
    UPDATE silo_catalog_version SET version = version + 1 WHERE id = 1;
CREATE TRIGGER IF NOT EXISTS silo_tenants_au AFTER UPDATE ON tenants FOR EACH ROW
    UPDATE silo_catalog_version SET version = version + 1 WHERE id = 1;
CREATE TRIGGER IF NOT EXISTS silo_tenants_ad AFTER DELETE ON tenants FOR EACH ROW
    UPDATE silo_catalog_version SET version = version + 1 WHERE id = 1;

CREATE TRIGGER IF NOT EXISTS silo_users_ai AFTER INSERT ON tenant_users FOR EACH ROW
    UPDATE silo_catalog_version SET version = version + 1 WHERE id = 1;
CREATE TRIGGER IF NOT EXISTS silo_users_au AFTER UPDATE ON tenant_users FOR EACH ROW
    UPDATE silo_catalog_version SET version = version + 1 WHERE id = 1;
CREATE TRIGGER IF NOT EXISTS silo_users_ad AFTER DELETE ON tenant_users FOR EACH ROW
    UPDATE silo_catalog_version SET version = version + 1 WHERE id = 1;
