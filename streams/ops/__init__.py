"""Operations: the local servers ``socialrec infra`` starts, their authentication and TLS, the
frontends' Kafka user, and the topics."""
