"""Values that many records share instead of each holding a copy: the
caller's options and a subscription's route.  Each ``of`` returns the one
object for its values (a bounded cache: past 100,000 kinds it stops
sharing rather than grow)."""

from __future__ import annotations

from typing import Any

__all__ = ["NO_OPTIONS", "NO_ROUTE", "RecordOptions", "SubscriptionRoute"]


_OPTIONS: dict[tuple[Any, ...], RecordOptions] = {}
_DEFAULT: list[RecordOptions] = []  # the options of most records, once made


class RecordOptions:
    """What the caller chose beyond the defaults: extra headers, a next hop,
    a Content-Type other than the package's.  Shared by every record with
    the same choices (see :meth:`of`); most records share the empty one."""

    __slots__ = ("content_type", "extra_headers", "outbound_proxy")

    def __init__(
        self,
        extra_headers: tuple[tuple[str, str], ...],
        outbound_proxy: str | None,
        content_type: str | None,
    ) -> None:
        self.extra_headers = extra_headers
        self.outbound_proxy = outbound_proxy
        self.content_type = content_type

    @classmethod
    def of(
        cls,
        extra_headers: tuple[tuple[str, str], ...] = (),
        outbound_proxy: str | None = None,
        content_type: str | None = None,
    ) -> RecordOptions:
        """The shared options object for these values."""
        if not extra_headers and outbound_proxy is None and content_type is None and _DEFAULT:
            return _DEFAULT[0]
        key = (extra_headers, outbound_proxy, content_type)
        options = _OPTIONS.get(key)
        if options is None:
            if len(_OPTIONS) > 100_000:
                _OPTIONS.clear()  # unbounded variety: stop sharing, stay bounded
            options = _OPTIONS[key] = cls(extra_headers, outbound_proxy, content_type)
        return options


NO_OPTIONS = RecordOptions.of()
_DEFAULT.append(NO_OPTIONS)


_ROUTES: dict[tuple[Any, ...], SubscriptionRoute] = {}


class SubscriptionRoute:
    """Where a subscription's requests go: the initial Request-URI when it
    is not the presentity, the remote target and route set of the dialog,
    and a Contact other than our listen address.  Shared by every
    subscription with the same values (all those of one notifier)."""

    __slots__ = ("contact", "from_tag", "initial_target", "options", "remote_target", "route_set")

    def __init__(
        self,
        initial_target: str | None,
        remote_target: str | None,
        route_set: tuple[str, ...],
        contact: str | None,
        from_tag: str | None,
        options: RecordOptions,
    ) -> None:
        self.options = options  # the subscription's, kept here to share one slot
        self.initial_target = initial_target
        self.remote_target = remote_target
        self.route_set = route_set
        self.contact = contact
        # Our tag when it is not made from the Call-ID (a row another UA
        # wrote): rare, so it lives here rather than in every record.
        self.from_tag = from_tag

    @classmethod
    def of(
        cls,
        initial_target: str | None = None,
        remote_target: str | None = None,
        route_set: tuple[str, ...] = (),
        contact: str | None = None,
        from_tag: str | None = None,
        options: RecordOptions | None = None,
    ) -> SubscriptionRoute:
        """The shared route object for these values."""
        key = (initial_target, remote_target, route_set, contact, from_tag, options or NO_OPTIONS)
        route = _ROUTES.get(key)
        if route is None:
            if len(_ROUTES) > 100_000:
                _ROUTES.clear()
            route = _ROUTES[key] = cls(*key)
        return route

    def replace(
        self,
        *,
        remote_target: str | object | None = ...,
        route_set: tuple[str, ...] | None = None,
        from_tag: str | object | None = ...,
        options: RecordOptions | None = None,
    ) -> SubscriptionRoute:
        """The shared route with the dialog's part (or the options) changed."""
        remote = self.remote_target if remote_target is ... else remote_target
        tag = self.from_tag if from_tag is ... else from_tag
        assert remote is None or isinstance(remote, str)
        assert tag is None or isinstance(tag, str)
        return SubscriptionRoute.of(
            self.initial_target,
            remote,
            self.route_set if route_set is None else route_set,
            self.contact,
            tag,
            options or self.options,
        )


NO_ROUTE = SubscriptionRoute.of()
