-- One corpus, run by every path that fingerprints (test_fingerprint_agree):
-- the pool, the shim under the sqlite3 shell and Python, and qprof normalize.
CREATE TABLE tmp_1 (id INTEGER PRIMARY KEY, name TEXT, score REAL, data BLOB);
create table tmp_22 (id integer primary key, tag text);
CREATE TABLE "Mixed Case" (k TEXT, v INTEGER);
INSERT INTO tmp_1 VALUES (1, 'alice', 1.5, X'00ff');
insert into tmp_1 values (2, 'it''s', -2.5e3, NULL);
INSERT   INTO   tmp_1 (id, name)
  VALUES (3, 'bob'), (4, 'carol'), (5, 'dave');
INSERT INTO tmp_22 (id, tag) VALUES (1, 'a;b'), (2, '/* not a comment */');
INSERT INTO "Mixed Case" VALUES ('x', 0x1F), ('y', +7);
/* a leading block comment */ SELECT * FROM tmp_1 WHERE id = 1;
SELECT * FROM tmp_1 WHERE id = 2 -- a trailing comment
;
SELECT name FROM tmp_1 WHERE id IN (1, 2, 3);
SELECT name FROM tmp_1 WHERE id IN (4);
select name from tmp_1 where id in (1,2,3,4,5,6,7,8,9,10);
SELECT name, score FROM tmp_1 WHERE name LIKE 'a%' AND score > 0.5 ORDER BY id LIMIT 10 OFFSET 0;
SELECT count(*) FROM tmp_22 t JOIN tmp_1 u ON u.id = t.id WHERE t.tag <> 'z';
SELECT 1 AS tmp_123;
SELECT 1 AS tmp_456;
SELECT "k", v FROM "Mixed Case" WHERE v BETWEEN 1 AND 100;
SELECT CASE WHEN score IS NULL THEN 'none' ELSE 'some' END FROM tmp_1;
WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 5) SELECT sum(x) FROM c;
SELECT abs(-3), coalesce(NULL, 4), 1 + 2 * 3 AS seven;
SELECT 'café', 'naïve ☕', length('日本語');
UPDATE tmp_1 SET score = score * 2 WHERE id = 3;
UPDATE tmp_1 SET name = 'x', score = 0 WHERE id IN (4, 5);
BEGIN;
SAVEPOINT sa_savepoint_17;
DELETE FROM tmp_22 WHERE id = 2;
RELEASE sa_savepoint_17;
COMMIT;
CREATE TRIGGER tmp_9_trg AFTER INSERT ON tmp_22 BEGIN
  UPDATE tmp_1 SET score = 1 WHERE id = new.id;
  SELECT 'in a trigger; still one statement';
END;
INSERT INTO tmp_22 VALUES (3, 'fired');
CREATE VIEW tmp_333_v AS SELECT id, upper(name) AS n FROM tmp_1;
SELECT n FROM tmp_333_v WHERE id > 1;
SELECT * FROM tmp_1 WHERE data = x'00FF' OR name IS NOT NULL;
SELECT typeof(1e10), typeof(.5), typeof(5.), 1 - -1;
PRAGMA user_version;
SELECT 1 AS tmp_789;
DROP VIEW tmp_333_v;
DROP TRIGGER tmp_9_trg;
DROP TABLE tmp_22;
