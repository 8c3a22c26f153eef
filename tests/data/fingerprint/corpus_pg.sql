-- One corpus, run by every path that fingerprints (test_fingerprint_agree):
-- the pool, the shim under psql, and qprof normalize --dialect postgres.
CREATE TABLE tmp_1 (id int PRIMARY KEY, name text, score float8, data bytea, doc jsonb);
create table tmp_22 (id integer primary key, tag text);
CREATE TABLE "Mixed Case" (k text, v int);
INSERT INTO tmp_1 VALUES (1, 'alice', 1.5, '\x00ff', '{"a": 1}');
insert into tmp_1 values (2, E'it\'s', -2.5e3, NULL, '{"b": [1, 2]}');
INSERT   INTO   tmp_1 (id, name)
  VALUES (3, $$bob$$), (4, $q$car;ol$q$), (5, U&'d\0061ve');
INSERT INTO tmp_22 (id, tag) VALUES (1, 'a;b'), (2, '/* not a comment */');
INSERT INTO "Mixed Case" VALUES ('x', 31), ('y', +7);
/* a leading block comment */ SELECT * FROM tmp_1 WHERE id = 1;
SELECT * FROM tmp_1 WHERE id = 2 -- a trailing comment
;
SELECT name FROM tmp_1 WHERE id IN (1, 2, 3);
SELECT name FROM tmp_1 WHERE id IN (4);
select name from tmp_1 where id in (1,2,3,4,5,6,7,8,9,10);
SELECT name FROM tmp_1 WHERE id = ANY (ARRAY[1, 2, 3]);
SELECT name, score FROM tmp_1 WHERE name LIKE 'a%' AND score > 0.5 ORDER BY id LIMIT 10 OFFSET 0;
SELECT count(*) FROM tmp_22 t JOIN tmp_1 u ON u.id = t.id WHERE t.tag <> 'z';
SELECT 1 AS tmp_123;
SELECT 1 AS tmp_456;
SELECT "k", v FROM "Mixed Case" WHERE v BETWEEN 1 AND 100;
SELECT CASE WHEN score IS NULL THEN 'none' ELSE 'some' END FROM tmp_1;
WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 5) SELECT sum(x) FROM c;
SELECT doc->>'a', doc ? 'b', doc @> '{"a": 1}' FROM tmp_1 WHERE doc IS NOT NULL;
SELECT 'café', 'naïve ☕', length('日本語'), B'1010', X'1F', true, NULL::int;
SELECT now() - interval '1 day' > '2024-01-15 10:00:00'::timestamptz;
UPDATE tmp_1 SET score = score * 2 WHERE id = 3 RETURNING id;
UPDATE tmp_1 SET name = 'x', score = 0 WHERE id IN (4, 5);
BEGIN;
SAVEPOINT sa_savepoint_17;
DELETE FROM tmp_22 WHERE id = 2;
RELEASE sa_savepoint_17;
COMMIT;
CREATE FUNCTION tmp_9_fn(a int) RETURNS int LANGUAGE sql AS $body$ SELECT a + 1; $body$;
SELECT tmp_9_fn(41);
DO $$ BEGIN PERFORM 1; END $$;
CREATE VIEW tmp_333_v AS SELECT id, upper(name) AS n FROM tmp_1;
SELECT n FROM tmp_333_v WHERE id > 1;
SELECT 1 AS tmp_789;
DROP VIEW tmp_333_v;
DROP FUNCTION tmp_9_fn(int);
DROP TABLE tmp_22;
