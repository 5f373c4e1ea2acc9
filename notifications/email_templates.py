"""The email templates' engine: Jinja2, speaking Django's translation tags.

A worker renders two templates per delivery, each looping over the findings of the
email; the Django template language spends about 2 ms per email doing that, Jinja2
(templates compiled to Python code) a small fraction of it. The templates are the
same files as before (`templates/notifications/email/`), with the same bytes out:

- `{% translate "…" %}` and `{% blocktranslate [with a=x …] [count n=x] %}…{{ a }}
  …[{% plural %}…]{% endblocktranslate %}` behave as Django's (this module's
  `DjangoTranslations`): the same msgids, `gettext`/`ngettext` of the active
  language, values escaped and the translation not; so `makemessages`, which reads
  these tags in any template, extracts the same catalog as before. `{% load … %}` is
  accepted and does nothing;
- every `{{ value }}` is shown as Django shows it (`localize`, then Django's HTML
  escaping, `html.escape`, where autoescaping is on), not as markupsafe would
  (`&#34;`/`&#39;` instead of `&quot;`/`&#x27;`);
- autoescaping is on for `.html` and off for `.txt`, which also say so with
  `{% autoescape false %}`; the files' last newline is kept, as Django keeps it;
- `|truncatechars(n)` is Django's filter (with a shortcut for a text that fits).

The engine is registered in TEMPLATES as "email", before Django's, and answers only
for names under `notifications/email/`: `render_to_string` of those names renders
them here, every other name goes on to Django's engine.
"""

import html
import unicodedata

from django.template.defaultfilters import truncatechars
from django.utils import translation
from django.utils.formats import localize
from django.utils.timezone import template_localtime
from jinja2 import (
    Environment,
    FileSystemLoader,
    Undefined,
    nodes,
    pass_eval_context,
)
from jinja2.exceptions import TemplateNotFound, TemplateSyntaxError
from jinja2.ext import Extension
from markupsafe import Markup

#: The template names this engine answers for (a prefix of the template directory).
PREFIX = "notifications/email"


_new_str = str.__new__


def _escaped(text: str) -> Markup:
    """`text` escaped as Django escapes (`html.escape`), marked safe. The Markup is
    made by `str.__new__`, as `Markup(text)` makes it from a plain text, without
    its checks in Python: this runs for every value of every email."""
    return _new_str(Markup, html.escape(text))  # escaped right here


def _display(value, autoescape: bool):
    """`value` as Django's `{{ value }}` shows it."""
    if type(value) is str:
        # The usual case first: a plain text.
        return _escaped(value) if autoescape else value
    if hasattr(value, "__html__"):
        # Already safe (markupsafe's Markup, Django's SafeString).
        return value
    if not isinstance(value, str):
        value = str(localize(template_localtime(value)))
    if autoescape:
        return _escaped(value)
    return value


@pass_eval_context
def _finalize(eval_ctx, value):
    return _display(value, eval_ctx.autoescape)


class DjangoTranslations(Extension):
    """Django's `load`, `translate` and `blocktranslate` tags, as far as the email
    templates use them: a literal to translate; a text with `{{ name }}`s, the names
    given by `with`/`count` or taken from the context, with an optional plural."""

    tags = {"load", "translate", "trans", "blocktranslate", "blocktrans"}

    def parse(self, parser):
        token = next(parser.stream)
        lineno = token.lineno
        if token.value == "load":
            while parser.stream.current.type != "block_end":
                next(parser.stream)
            return []
        if token.value in ("translate", "trans"):
            message = parser.stream.expect("string").value
            call = self.call_method("_translate", [nodes.Const(message)])
            return nodes.Output([call], lineno=lineno)
        return self._parse_blocktranslate(parser, lineno)

    def _parse_blocktranslate(self, parser, lineno):
        given: dict[str, nodes.Expr] = {}
        counter = None
        while parser.stream.current.type != "block_end":
            option = parser.stream.expect("name")
            if option.value not in ("with", "count"):
                parser.fail(
                    f"blocktranslate takes 'with' and 'count', not {option.value!r}",
                    option.lineno,
                    TemplateSyntaxError,
                )
            assigned = 0
            while (
                parser.stream.current.type == "name"
                and parser.stream.look().type == "assign"
            ):
                name = next(parser.stream).value
                next(parser.stream)
                given[name] = parser.parse_expression()
                assigned += 1
                if option.value == "count":
                    counter = name
                    break
            if not assigned:
                parser.fail(f"'{option.value}' needs name=value", option.lineno)
        parser.stream.expect("block_end")
        names, singular, end = self._parse_text(parser)
        plural = None
        if end == "plural":
            if counter is None:
                parser.fail("'plural' needs 'count'", lineno)
            plural_names, plural, end = self._parse_text(parser)
            names += plural_names
            if end != "endblocktranslate":
                parser.fail("a second 'plural' in blocktranslate", lineno)
        elif counter is not None:
            parser.fail("'count' needs a 'plural'", lineno)
        variables = nodes.Dict(
            [
                nodes.Pair(
                    nodes.Const(name), given.get(name) or nodes.Name(name, "load")
                )
                for name in dict.fromkeys(names)
            ]
        )
        call = self.call_method(
            "_blocktranslate",
            [
                nodes.Const(singular),
                nodes.Const(plural),
                given[counter] if counter else nodes.Const(None),
                variables,
            ],
        )
        return nodes.Output([call], lineno=lineno)

    @staticmethod
    def _parse_text(parser) -> tuple[list[str], str, str]:
        """The text up to `{% plural %}` or `{% endblocktranslate %}`, as Django
        builds the msgid: `%` doubled, `{{ name }}` as `%(name)s`."""
        names, parts = [], []
        while True:
            token = parser.stream.current
            if token.type == "data":
                parts.append(token.value.replace("%", "%%"))
                next(parser.stream)
            elif token.type == "variable_begin":
                next(parser.stream)
                name = parser.stream.expect("name").value
                parser.stream.expect("variable_end")
                names.append(name)
                parts.append(f"%({name})s")
            elif token.type == "block_begin":
                next(parser.stream)
                end = parser.stream.expect("name")
                if end.value not in ("plural", "endblocktranslate", "endblocktrans"):
                    parser.fail(
                        "only {{ name }} and text may be inside blocktranslate",
                        end.lineno,
                    )
                if end.value == "plural":
                    parser.stream.expect("block_end")
                    return names, "".join(parts), "plural"
                # The parser itself takes the end tag's "%}".
                return names, "".join(parts), "endblocktranslate"
            elif token.type == "eof":
                parser.fail("blocktranslate is not closed", token.lineno)
            else:
                parser.fail("only {{ name }} and text may be inside blocktranslate")

    @pass_eval_context
    def _translate(self, eval_ctx, message: str):
        # As Django's {% translate %}: a literal is safe, so is its translation.
        text = translation.gettext(message.replace("%", "%%")).replace("%%", "%")
        return Markup(text) if eval_ctx.autoescape else text  # nosec B704  # a template's literal

    @pass_eval_context
    def _blocktranslate(self, eval_ctx, singular, plural, count, variables):
        if plural is None:
            text = translation.gettext(singular)
        else:
            if not isinstance(count, int | float):
                raise TemplateSyntaxError(
                    f"blocktranslate count must be a number, not {count!r}",
                    lineno=None,
                )
            text = translation.ngettext(singular, plural, count)
        autoescape = eval_ctx.autoescape
        data = {
            name: str(_display(value, autoescape)) for name, value in variables.items()
        }
        try:
            text %= data
        except (KeyError, ValueError):
            # A translation naming a variable the msgid does not: as Django does,
            # the untranslated text.
            with translation.override(None):
                return self._blocktranslate(
                    eval_ctx, singular, plural, count, variables
                )
        return Markup(text) if autoescape else text  # nosec B704  # literal, values escaped by _display


class _EmailLoader(FileSystemLoader):
    """Django's template directories, for the names under PREFIX only."""

    def get_source(self, environment, template):
        if not template.startswith(PREFIX + "/"):
            raise TemplateNotFound(template)
        return super().get_source(environment, template)

    def list_templates(self):
        return [n for n in super().list_templates() if n.startswith(PREFIX + "/")]


def _truncatechars(value, length):
    """Django's `truncatechars`, without its walk over every character when the
    text is short enough to stay whole (the usual case): the same result, the text
    in NFC."""
    if not hasattr(value, "__html__"):
        text = unicodedata.normalize("NFC", str(value))
        if 0 < int(length) and len(text) <= int(length):
            return text
    return truncatechars(value, length)


def _autoescape(name: str | None) -> bool:
    return not (name or "").endswith(".txt")


def environment(**options) -> Environment:
    """The email templates' Jinja2 environment (TEMPLATES' "environment" option).

    Only names under PREFIX are found: the directories Django gives (DIRS) are
    searched for `notifications/email/…` and nothing else.
    """
    loader = options.pop("loader", None)
    options.update(
        loader=_EmailLoader(getattr(loader, "searchpath", [])),
        autoescape=_autoescape,
        # Missing values show as nothing, as in Django (not DebugUndefined's
        # "{{ name }}", which the backend picks when DEBUG is on).
        undefined=Undefined,
        finalize=_finalize,
        keep_trailing_newline=True,
        extensions=[DjangoTranslations],
    )
    env = Environment(**options)  # nosec B701  # autoescape: on for all but .txt emails
    env.filters["truncatechars"] = _truncatechars
    return env
