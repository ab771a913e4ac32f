-- Demo tenants on backend 1 (compose service mariadb1): acme and the
-- suspended initech. Same data as scripts/demo.sh. Each tenant user has
-- privileges on its own database only.
CREATE DATABASE IF NOT EXISTS tenant_acme;
CREATE OR REPLACE USER 'acme_rw'@'%' IDENTIFIED BY 'acme-db-secret';
GRANT ALL PRIVILEGES ON tenant_acme.* TO 'acme_rw'@'%';
CREATE TABLE tenant_acme.items (
    id INT AUTO_INCREMENT PRIMARY KEY,
    name VARCHAR(100) NOT NULL,
    price DECIMAL(12,2) NOT NULL
);
INSERT INTO tenant_acme.items (name, price) VALUES
    ('acme widget', 9.99), ('acme gadget', 24.50), ('acme anvil', 120.00);

CREATE DATABASE IF NOT EXISTS tenant_initech;
CREATE OR REPLACE USER 'initech_rw'@'%' IDENTIFIED BY 'initech-db-secret';
GRANT ALL PRIVILEGES ON tenant_initech.* TO 'initech_rw'@'%';
CREATE TABLE tenant_initech.items (
    id INT AUTO_INCREMENT PRIMARY KEY,
    name VARCHAR(100) NOT NULL,
    price DECIMAL(12,2) NOT NULL
);
INSERT INTO tenant_initech.items (name, price) VALUES
    ('initech stapler', 4.20), ('initech TPS report cover', 0.99);

-- silo's health checks log in as this account (no password, no
-- privileges): each check is then a clean login and quit, and leaves no
-- "access denied" line in the server's error log.
CREATE USER IF NOT EXISTS 'silo_health'@'%';
