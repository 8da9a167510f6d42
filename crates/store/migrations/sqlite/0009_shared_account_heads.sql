-- The shared accounts (a currency's issuance, compensation, loss) write their ledger
-- entries under the hottest locks, after the transaction's seal_pending row, so their
-- entries name no batch: the sealing job reads these few accounts' chain heads itself at
-- every checkpoint. This index finds them without reading every wallet.
CREATE INDEX ledger_shared_accounts ON ledger_accounts (kind) WHERE kind IN ('issuance', 'compensation', 'loss');
