-- Every change of an API key (revocation, or any other update or delete, by promosync or by
-- hand) is announced on the channel promosync_keys with the key's id, after its transaction
-- commits: each API process drops that key from its cache of verified keys (src/store/key-cache.ts).
CREATE FUNCTION promosync_api_key_changed() RETURNS TRIGGER
LANGUAGE plpgsql AS $$
BEGIN
  PERFORM pg_notify('promosync_keys', OLD.id);
  RETURN NULL;
END
$$;

CREATE TRIGGER api_key_changed
  AFTER UPDATE OR DELETE ON api_key
  FOR EACH ROW EXECUTE FUNCTION promosync_api_key_changed();
