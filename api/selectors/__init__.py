"""Label and field selectors, parsed and matched the way upstream apimachinery does.

Label selectors follow `k8s.io/apimachinery/pkg/labels` (lexer, grammar, key and
value validation and the wording of every error); field selectors follow
`k8s.io/apimachinery/pkg/fields` plus the per-kind field label conversions and
selectable field sets of kube-apiserver. Error messages match upstream word for
word because clients (and people reading kubectl output) compare them; every
bad input is an `ApiError` 400.
"""

from timonel.api.selectors.fields import (
    FieldRequirement,
    FieldSelector,
    escape_field_value,
    field_index_value,
    field_matches,
    parse_field_selector,
    selectable_fields,
)
from timonel.api.selectors.labels import (
    DOES_NOT_EXIST,
    DOUBLE_EQUALS,
    EQUALS,
    EVERYTHING,
    EXISTS,
    GREATER_THAN,
    IN,
    LESS_THAN,
    NOT_EQUALS,
    NOT_IN,
    NOTHING,
    LabelSelector,
    Requirement,
    from_label_selector_dict,
    matches,
    parse_label_selector,
    requirement_text,
    selector_from_set,
    to_text,
)
from timonel.api.selectors.messages import go_quote, label_key_errors, label_value_errors

__all__ = [
    "DOES_NOT_EXIST", "DOUBLE_EQUALS", "EQUALS", "EVERYTHING", "EXISTS", "GREATER_THAN", "IN",
    "LESS_THAN", "NOTHING", "NOT_EQUALS", "NOT_IN", "FieldRequirement", "FieldSelector",
    "LabelSelector", "Requirement", "escape_field_value", "field_index_value", "field_matches",
    "from_label_selector_dict", "go_quote", "label_key_errors", "label_value_errors", "matches",
    "parse_field_selector", "parse_label_selector", "requirement_text", "selectable_fields",
    "selector_from_set", "to_text",
]
