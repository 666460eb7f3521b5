-- A few statements for examples/c/fingerprint.c.
SELECT id, name FROM items WHERE category = 'books' AND price < 20;
select id, name from items where category = 'games' and price < 55;
INSERT INTO orders (item_id, qty) VALUES (42, 1);
UPDATE items SET price = price * 1.1 WHERE id IN (1, 2, 3);
SELECT $tag$a ; in a dollar quote$tag$ AS s;
