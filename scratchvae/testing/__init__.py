"""Test oracles, shipped for anyone's model: the gradient checker (:mod:`.gradcheck`), models whose evidence
is exact (:mod:`.exact`) and the property-test kit for an ELBO (:mod:`.proptest`)."""
