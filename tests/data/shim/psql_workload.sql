-- A workload for psql -f under the shim (test_shim_pg.sh counts each shape).
CREATE TABLE item (id int PRIMARY KEY, name text NOT NULL, qty int);
INSERT INTO item (id, name, qty) VALUES (1, 'apple', 10);
INSERT INTO item (id, name, qty) VALUES (2, 'pear', 20);
INSERT INTO item (id, name, qty) VALUES (3, 'plum', 30);
SELECT name, qty FROM item WHERE id = 1;
SELECT name, qty FROM item WHERE id = 2;
COPY item (id, name, qty) FROM stdin;
10	fig	1
11	kiwi	2
12	lime	3
\.
UPDATE item SET qty = qty + 1 WHERE id > 1;
SELECT count(*), sum(qty) FROM item;
INSERT INTO item (id, name, qty) VALUES (1, 'duplicate', 0);
BEGIN;
DELETE FROM item WHERE id >= 10;
ROLLBACK;
SELECT id, name FROM item ORDER BY id;
