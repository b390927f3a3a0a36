"""The hand-written row-level triggers the benchmark compares with: what a
careful developer writes without dbrules (``n = n + 1`` per row)."""

from django.db import migrations

ROW_TRIGGERS = """
CREATE FUNCTION bench_rowbook_copy() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    SELECT name INTO NEW.author_name FROM bench_shop_rowauthor WHERE id = NEW.author_id;
    RETURN NEW;
END $$;
CREATE TRIGGER bench_rowbook_copy BEFORE INSERT OR UPDATE OF author_id ON bench_shop_rowbook
    FOR EACH ROW EXECUTE FUNCTION bench_rowbook_copy();

CREATE FUNCTION bench_rowbook_count() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP IN ('UPDATE', 'DELETE') THEN
        UPDATE bench_shop_rowauthor
           SET num_books = num_books - 1,
               num_published = num_published - OLD.published::int,
               total_pages = total_pages - OLD.pages
         WHERE id = OLD.author_id;
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') THEN
        UPDATE bench_shop_rowauthor
           SET num_books = num_books + 1,
               num_published = num_published + NEW.published::int,
               total_pages = total_pages + NEW.pages
         WHERE id = NEW.author_id;
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER bench_rowbook_count_ins AFTER INSERT OR DELETE ON bench_shop_rowbook
    FOR EACH ROW EXECUTE FUNCTION bench_rowbook_count();
CREATE TRIGGER bench_rowbook_count_upd AFTER UPDATE OF author_id, published, pages ON bench_shop_rowbook
    FOR EACH ROW WHEN (OLD.author_id IS DISTINCT FROM NEW.author_id
                       OR OLD.published IS DISTINCT FROM NEW.published
                       OR OLD.pages IS DISTINCT FROM NEW.pages)
    EXECUTE FUNCTION bench_rowbook_count();

CREATE FUNCTION bench_rowauthor_rename() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE bench_shop_rowbook SET author_name = NEW.name WHERE author_id = NEW.id;
    RETURN NULL;
END $$;
CREATE TRIGGER bench_rowauthor_rename AFTER UPDATE OF name ON bench_shop_rowauthor
    FOR EACH ROW WHEN (OLD.name IS DISTINCT FROM NEW.name)
    EXECUTE FUNCTION bench_rowauthor_rename();
"""

DROP_ROW_TRIGGERS = """
DROP TRIGGER bench_rowauthor_rename ON bench_shop_rowauthor;
DROP TRIGGER bench_rowbook_count_upd ON bench_shop_rowbook;
DROP TRIGGER bench_rowbook_count_ins ON bench_shop_rowbook;
DROP TRIGGER bench_rowbook_copy ON bench_shop_rowbook;
DROP FUNCTION bench_rowauthor_rename();
DROP FUNCTION bench_rowbook_count();
DROP FUNCTION bench_rowbook_copy();
"""


class Migration(migrations.Migration):
    dependencies = [("bench_shop", "0001_initial")]
    operations = [migrations.RunSQL(ROW_TRIGGERS, DROP_ROW_TRIGGERS)]
