-- Not expressible in schema.prisma: helpers of the apply statement (src/store/apply.sql).

-- The apply statement now compares an event's fields with the row's by joining both sets of
-- names, each row's fields read once; the per-event lookup this function did read the whole
-- row again for every field (quadratic in a row's size).
DROP FUNCTION IF EXISTS promosync_fields_win(JSONB, JSONB, BIGINT);

-- An entity's field limits (docs/design.md#attribute-limits), replayed in arrival order for one
-- entity whose batch could pass them. `sizes` holds the row's fields (name -> bytes); `writes`
-- the batch's candidate writes, `[[ord, {name: bytes, ...}], ...]` in arrival order. Each write
-- that would grow the entity past `max_fields` fields or `max_bytes` bytes is returned, with the
-- fields and bytes it would have made and whether the count is what passed; the others are kept, each field counted at its largest
-- value. Returns nothing when every write fits.
CREATE FUNCTION promosync_field_quota(sizes JSONB, writes JSONB, max_fields BIGINT, max_bytes BIGINT)
RETURNS TABLE (ord INT, fields BIGINT, bytes BIGINT, over_fields BOOLEAN)
LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
  kept JSONB := coalesce(sizes, '{}'::jsonb);
  n BIGINT;
  total BIGINT;
  n2 BIGINT;
  total2 BIGINT;
  w JSONB;
  f RECORD;
  prev BIGINT;
BEGIN
  SELECT count(*), coalesce(sum(e.value::bigint), 0) INTO n, total FROM jsonb_each_text(kept) e;
  FOR w IN SELECT a.value FROM jsonb_array_elements(writes) a LOOP
    n2 := n;
    total2 := total;
    FOR f IN SELECT e.key, e.value::bigint AS b FROM jsonb_each_text(w -> 1) e LOOP
      prev := (kept ->> f.key)::bigint;
      IF prev IS NULL THEN
        n2 := n2 + 1;
        total2 := total2 + f.b;
      ELSIF f.b > prev THEN
        total2 := total2 + f.b - prev;
      END IF;
    END LOOP;
    IF (n2 > max_fields AND n2 > n) OR (total2 > max_bytes AND total2 > total) THEN
      ord := (w ->> 0)::int;
      fields := n2;
      bytes := total2;
      over_fields := n2 > max_fields AND n2 > n;
      RETURN NEXT;
    ELSE
      kept := kept || coalesce((
        SELECT jsonb_object_agg(e.key, greatest(e.value::bigint, coalesce((kept ->> e.key)::bigint, 0)))
        FROM jsonb_each_text(w -> 1) e), '{}'::jsonb);
      n := n2;
      total := total2;
    END IF;
  END LOOP;
END
$$;
