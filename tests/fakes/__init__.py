"""Wire-format fakes of the outside services, served over real local HTTP for the official SDKs."""
