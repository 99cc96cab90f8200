-- Log-in through an external OpenID Connect provider and apps with a client secret (issue 20,
-- decision 0039).

-- A user may be linked to one person at the hospital's OpenID Connect provider: the id_token's
-- `iss` and `sub` (a subject is unique only within its issuer). A user without a local password
-- logs in through the provider only.
ALTER TABLE auth_user ADD COLUMN oidc_issuer TEXT;
ALTER TABLE auth_user ADD COLUMN oidc_subject TEXT;
CREATE UNIQUE INDEX auth_user_oidc ON auth_user (oidc_issuer, oidc_subject);

-- A confidential app that authenticates with a client secret (client_secret_basic or
-- client_secret_post): the secret's Argon2id hash (PHC string). Removed with the app.
ALTER TABLE auth_app ADD COLUMN secret TEXT;
