-- How far each read model folded from the service's own log has got (runtime.projection).
CREATE TABLE {schema}.projection_checkpoints (
    name     text   PRIMARY KEY,
    position bigint NOT NULL
);
