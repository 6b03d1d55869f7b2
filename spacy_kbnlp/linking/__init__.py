"""Pipeline signals for ``entqa_linker``'s default mode: mention hints from an
upstream NER, entity priors, hybrid (dense + lexical) candidates and the small
final scorer that combines them."""
