-- Demo tenant on backend 2 (compose service mariadb2): globex. Same data as
-- scripts/demo.sh. The tenant user has privileges on its own database only.
CREATE DATABASE IF NOT EXISTS tenant_globex;
CREATE OR REPLACE USER 'globex_rw'@'%' IDENTIFIED BY 'globex-db-secret';
GRANT ALL PRIVILEGES ON tenant_globex.* TO 'globex_rw'@'%';
CREATE TABLE tenant_globex.items (
    id INT AUTO_INCREMENT PRIMARY KEY,
    name VARCHAR(100) NOT NULL,
    price DECIMAL(12,2) NOT NULL
);
INSERT INTO tenant_globex.items (name, price) VALUES
    ('globex hammock', 35.00), ('globex doomsday device', 999999.99);

-- silo's health checks log in as this account (no password, no
-- privileges): each check is then a clean login and quit, and leaves no
-- "access denied" line in the server's error log.
CREATE USER IF NOT EXISTS 'silo_health'@'%';
