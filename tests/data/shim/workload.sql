-- A workload for the sqlite3 CLI under the shim: a few shapes, each run a
-- known number of times (test_shim_sqlite.sh counts them).
CREATE TABLE item(id INTEGER PRIMARY KEY, name TEXT NOT NULL, qty INTEGER);
INSERT INTO item(id, name, qty) VALUES (1, 'apple', 10);
INSERT INTO item(id, name, qty) VALUES (2, 'pear', 20);
INSERT INTO item(id, name, qty) VALUES (3, 'plum', 30);
INSERT INTO item(id, name, qty) VALUES (4, 'fig', 40);
SELECT name, qty FROM item WHERE id = 1;
SELECT name, qty FROM item WHERE id = 3;
select name, qty from item where id = 4 /* same shape */;
UPDATE item SET qty = qty + 1 WHERE id > 2;
SELECT count(*), sum(qty) FROM item;
INSERT INTO item(id, name, qty) VALUES (1, 'duplicate', 0);
DELETE FROM item WHERE name LIKE 'p%';
SELECT id, name FROM item ORDER BY id;
